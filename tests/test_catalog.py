"""The TikTok event catalog: names per event_source, legacy, reserved, case, custom."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdp_tiktok.tiktok.catalog import Catalog, CatalogError, load_catalog

SOURCES = ("web", "app", "offline", "crm")
WEB_2025 = {
    "AddPaymentInfo", "AddToCart", "AddToWishlist", "ApplicationApproval",
    "CompleteRegistration", "Contact", "CustomizeProduct", "Download", "FindLocation",
    "InitiateCheckout", "Lead", "Purchase", "Schedule", "Search", "StartTrial",
    "SubmitApplication", "Subscribe", "ViewContent",
}  # fmt: skip


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def test_catalog_is_versioned_and_loaded_once(catalog: Catalog) -> None:
    assert catalog.version == "2025-05"
    assert load_catalog() is catalog


def test_web_list_is_the_2025_help_centre_table(catalog: Catalog) -> None:
    assert catalog.standard("web") == WEB_2025
    assert catalog.standard("offline") == WEB_2025
    assert "CompletePayment" not in catalog.standard("web")
    assert "Pageview" not in catalog.standard("web")


@pytest.mark.parametrize("name", sorted(WEB_2025))
@pytest.mark.parametrize("source", ["web", "offline"])
def test_standard_names_pass_without_warning(catalog: Catalog, name: str, source: str) -> None:
    check = catalog.check(name, source)
    assert check.ok and check.error is None and check.warning is None
    assert check.canonical == name and check.kind == "standard"


def test_crm_accepts_web_standard_names_with_a_warning(catalog: Catalog) -> None:
    check = catalog.check("Purchase", "crm")
    assert check.ok and check.warning and "CRM" in check.warning


@pytest.mark.parametrize(
    ("legacy", "replacement"), [("CompletePayment", "Purchase"), ("SubmitForm", "Lead")]
)
def test_renamed_legacy_names_pass_with_a_warning_naming_the_new_one(
    catalog: Catalog, legacy: str, replacement: str
) -> None:
    for source in ("web", "offline", "crm"):
        check = catalog.check(legacy, source)
        assert check.ok, source
        assert check.warning and replacement in check.warning
        assert check.canonical == replacement and check.kind == "legacy"


@pytest.mark.parametrize("name", ["ClickButton", "PlaceAnOrder"])
def test_soft_deprecated_names_pass_with_sunset_warning(catalog: Catalog, name: str) -> None:
    check = catalog.check(name, "web")
    assert check.ok and check.warning and "2027" in check.warning
    assert check.canonical == name


def test_app_list_keeps_tiktok_spelling(catalog: Catalog) -> None:
    assert catalog.check("LaunchAPP", "app").ok
    wrong = catalog.check("LaunchApp", "app")
    assert not wrong.ok and wrong.error and "'LaunchAPP'" in wrong.error
    assert wrong.canonical == "LaunchAPP"
    assert {"InAppADClick", "InAppADImpr", "Checkout", "Registration"} <= catalog.standard("app")


@pytest.mark.parametrize(
    ("name", "target"), [("Checkout", "PlaceAnOrder"), ("Registration", "CompleteRegistration")]
)
def test_checkout_and_registration_are_app_events_but_reserved_on_web(
    catalog: Catalog, name: str, target: str
) -> None:
    assert catalog.check(name, "app").ok
    for custom in (False, True):
        refused = catalog.check(name, "web", custom=custom)
        assert not refused.ok and refused.error and target in refused.error
        assert refused.canonical == target


@pytest.mark.parametrize("name", ["Browse", "AddBilling", "ClickForm", "ViewForm", "Consult"])
def test_reserved_names_are_refused_even_as_custom(catalog: Catalog, name: str) -> None:
    check = catalog.check(name, "web", custom=True)
    assert not check.ok
    assert check.error and "reserved" in check.error
    assert check.canonical == catalog.reserved[name]


@pytest.mark.parametrize("source", SOURCES)
def test_wrong_case_is_refused_with_the_right_spelling(catalog: Catalog, source: str) -> None:
    for custom in (False, True):
        check = catalog.check("purchase", source, custom=custom)
        assert not check.ok
        assert check.error and "case-sensitive" in check.error and "'Purchase'" in check.error


def test_completeregistration_lowercase_is_refused(catalog: Catalog) -> None:
    check = catalog.check("completeregistration", "web", custom=True)
    assert not check.ok and check.canonical == "CompleteRegistration"


def test_unknown_names_need_the_custom_flag(catalog: Catalog) -> None:
    refused = catalog.check("WishlistShared", "web")
    assert not refused.ok and refused.error and "custom" in refused.error
    for source in ("web", "app", "crm"):
        allowed = catalog.check("WishlistShared", source, custom=True)
        assert allowed.ok and allowed.kind == "custom" and allowed.canonical == "WishlistShared"


def test_offline_refuses_custom_events(catalog: Catalog) -> None:
    check = catalog.check("WishlistShared", "offline", custom=True)
    assert not check.ok and check.error and "offline" in check.error


def test_app_names_on_web_say_where_they_belong(catalog: Catalog) -> None:
    check = catalog.check("LaunchAPP", "web")
    assert not check.ok and check.error and "app event" in check.error


@pytest.mark.parametrize("name", ["Pageview", "PageView"])
def test_page_view_spellings_are_web_only(catalog: Catalog, name: str) -> None:
    assert catalog.check(name, "web").ok
    assert catalog.check(name, "web").kind == "page_view"
    for source in ("app", "offline", "crm"):
        assert not catalog.check(name, source, custom=True).ok


def test_custom_names_with_surrounding_spaces_are_refused(catalog: Catalog) -> None:
    assert not catalog.check(" Shared", "web", custom=True).ok
    assert not catalog.check("", "web", custom=True).ok


def test_unknown_source(catalog: Catalog) -> None:
    check = catalog.check("Purchase", "email")
    assert not check.ok and check.error and "event_source" in check.error
    with pytest.raises(KeyError):
        catalog.standard("email")


def test_malformed_catalog_data_is_refused() -> None:
    with pytest.raises(CatalogError):
        Catalog({"version": "x", "lists": {}})


@given(name=st.text(max_size=30), source=st.sampled_from(SOURCES), custom=st.booleans())
def test_check_is_total_and_consistent(name: str, source: str, custom: bool) -> None:
    catalog = load_catalog()
    check = catalog.check(name, source, custom=custom)
    assert check.ok == (check.error is None)
    if check.ok and not custom:
        assert check.kind in ("standard", "legacy", "page_view")
    if check.ok and check.kind == "custom":
        assert source != "offline"
        assert name not in catalog.reserved or source == "app"
        assert name.lower() not in {n.lower() for n in catalog.standard(source)}
