"""The simulated world that is the same for everybody: products, stores, campaigns and word lists.

Guarantees: everything here is a pure function of the seed / config, product ids and store ids are
unique, every price is a positive integer in minor units, and campaign ids are unique and sent inside
the simulated window (so their holdouts can be measured against the stream).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import accumulate
from typing import NamedTuple

from pipeline.simulate.config import DAY_MS, HOUR_MS, SimConfig, stable_hash

# (category, lowest price, highest price) in EUR cents.
_CATEGORIES: tuple[tuple[str, int, int], ...] = (
    ("shoes", 3_999, 18_999),
    ("jackets", 5_999, 29_999),
    ("shirts", 1_499, 5_999),
    ("trousers", 2_999, 9_999),
    ("accessories", 599, 4_999),
    ("bags", 2_499, 19_999),
    ("sportswear", 1_999, 8_999),
    ("kids", 999, 3_999),
    ("home", 999, 7_999),
    ("beauty", 499, 4_999),
)
_ADJECTIVES = (
    "classic",
    "urban",
    "organic",
    "slim",
    "vintage",
    "summer",
    "winter",
    "light",
    "premium",
    "eco",
)

FIRST_NAMES: tuple[str, ...] = (
    "anna",
    "ben",
    "clara",
    "david",
    "elena",
    "felix",
    "greta",
    "hugo",
    "ida",
    "jonas",
    "karla",
    "leon",
    "mia",
    "noah",
    "olga",
    "paul",
    "quinn",
    "rosa",
    "sven",
    "tara",
    "umut",
    "vera",
    "wim",
    "xenia",
    "yusuf",
    "zoe",
    "lucas",
    "emma",
    "louis",
    "lea",
    "marta",
    "pedro",
    "sofia",
    "tom",
    "nina",
    "omar",
)
LAST_NAMES: tuple[str, ...] = (
    "schmidt",
    "muller",
    "martin",
    "bernard",
    "dubois",
    "jansen",
    "devries",
    "rossi",
    "bianchi",
    "garcia",
    "lopez",
    "novak",
    "horvat",
    "nielsen",
    "berg",
    "kowalski",
    "silva",
    "costa",
    "meyer",
    "weber",
    "fischer",
    "wagner",
    "becker",
    "hoffmann",
    "klein",
    "wolf",
    "peeters",
    "maes",
    "smit",
    "visser",
)
# RFC 2606 reserved domains: simulated addresses can never belong to a real person.
EMAIL_DOMAINS: tuple[str, ...] = ("example.com", "example.org", "example.net")
SOCIAL_PLATFORMS: tuple[str, ...] = ("instagram", "x", "tiktok", "facebook")
REFERRERS: tuple[str | None, ...] = (
    None,
    None,
    "https://www.google.com/",
    "https://www.bing.com/",
    "https://www.instagram.com/",
    "https://duckduckgo.com/",
    "https://news.example.org/style",
)
SITE = "https://shop.example.com"

# Paid traffic carries UTM tags but is bought per click, so it has no holdout (not a campaign send).
PAID_ATTRIBUTIONS: tuple[dict[str, str | None], ...] = (
    {"campaign_id": "paid-search-brand", "utm_source": "google", "utm_medium": "cpc", "utm_campaign": "brand"},
    {
        "campaign_id": "paid-social-new",
        "utm_source": "instagram",
        "utm_medium": "paid_social",
        "utm_campaign": "new_arrivals",
    },
    {"campaign_id": None, "utm_source": "partner-blog", "utm_medium": "referral", "utm_campaign": None},
)

POSITIVE_TEXTS = ("love my new {p}!", "great service at the store today", "the {p} fits perfectly, 10/10")
NEUTRAL_TEXTS = ("anyone tried the {p}?", "is the store open on sunday?", "just saw the new collection")
NEGATIVE_TEXTS = ("my {p} broke after a week", "waited 20 minutes at the till", "delivery is late again")


class Product(NamedTuple):
    """One catalogue entry; ``price_minor`` is in EUR cents."""

    product_id: str
    category: str
    name: str
    price_minor: int


class Store(NamedTuple):
    """A physical store; flagships have a shared customer kiosk (an app tablet anyone can log into)."""

    store_id: str
    city: str
    kiosk_device_id: str | None


class Campaign(NamedTuple):
    """A marketing send with a randomised holdout: ``channel`` is ``push`` (app) or ``email``."""

    campaign_id: str
    name: str
    channel: str
    sent_ms: int


@dataclass(frozen=True, slots=True)
class Catalog:
    """Products with popularity weights (cumulative, for ``random.choices``), stores and campaigns."""

    products: tuple[Product, ...]
    cum_weights: tuple[float, ...]
    stores: tuple[Store, ...]
    store_cum_weights: tuple[float, ...]
    campaigns: tuple[Campaign, ...]

    def pick_products(self, rng: random.Random, k: int) -> list[Product]:
        """``k`` products drawn by popularity (a long tail, like real catalogues); may repeat."""
        return rng.choices(self.products, cum_weights=self.cum_weights, k=k)

    def pick_store(self, rng: random.Random) -> Store:
        """A store by footfall (flagships draw more visitors)."""
        return rng.choices(self.stores, cum_weights=self.store_cum_weights, k=1)[0]

    def kiosk_devices(self) -> dict[str, str]:
        """Kiosk device id -> store id, for every store that has one."""
        return {s.kiosk_device_id: s.store_id for s in self.stores if s.kiosk_device_id}


_CITIES = ("berlin", "hamburg", "munich", "cologne", "paris", "lyon", "amsterdam", "rotterdam", "vienna")
_CAMPAIGN_NAMES = (
    "spring_sale",
    "new_arrivals",
    "loyalty_bonus",
    "weekend_deal",
    "back_in_stock",
    "vip_preview",
)


def build_catalog(config: SimConfig, n_products: int = 300, n_stores: int = 24, n_flagships: int = 3) -> Catalog:
    """The shared world for ``config``: depends on the seed and the timeline only, not on ``customers``."""
    rng = random.Random(stable_hash(config.seed, "catalog"))
    products: list[Product] = []
    for i in range(n_products):
        category, low, high = _CATEGORIES[i % len(_CATEGORIES)]
        # Prices end in 99 cents, like shelf prices do.
        price = max(99, (rng.randint(low, high) // 100) * 100 + 99)
        name = f"{rng.choice(_ADJECTIVES)} {category.rstrip('s')} {i:03d}"
        products.append(Product(f"SKU-{10_000 + i}", category, name, price))
    rng.shuffle(products)
    # Zipf-like popularity so a few products dominate carts, as in real shops.
    weights = [1.0 / (rank + 1) ** 0.8 for rank in range(n_products)]
    stores = tuple(
        Store(
            f"store-{i + 1:03d}",
            _CITIES[i % len(_CITIES)],
            f"kiosk-{stable_hash(config.seed, 'kiosk', i):016x}" if i < n_flagships else None,
        )
        for i in range(n_stores)
    )
    store_weights = [4.0 if s.kiosk_device_id else 1.0 for s in stores]
    return Catalog(
        tuple(products),
        tuple(accumulate(weights)),
        stores,
        tuple(accumulate(store_weights)),
        _campaigns(config),
    )


def _campaigns(config: SimConfig) -> tuple[Campaign, ...]:
    """One send every ~5 days (alternating push and e-mail), at 10:00 or 18:00 UTC, inside the window."""
    day0 = config.start_ms - config.start_ms % DAY_MS
    out: list[Campaign] = []
    k = 0
    for day in range(2, config.days, 5):
        sent = day0 + day * DAY_MS + (10 if k % 2 == 0 else 18) * HOUR_MS
        if not config.start_ms <= sent < config.end_ms:
            continue
        channel = "push" if k % 2 == 0 else "email"
        name = _CAMPAIGN_NAMES[k % len(_CAMPAIGN_NAMES)]
        date = datetime.fromtimestamp(sent / 1000, UTC).strftime("%Y%m%d")
        out.append(Campaign(f"cmp-{date}-{channel}-{name}", name, channel, sent))
        k += 1
    return tuple(out)
