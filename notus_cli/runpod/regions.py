"""RunPod data centres, and the region names `notus deploy --region` accepts.

Sovereignty is a feature (design decision 8): `is` pins Iceland's data centres, `eu` Europe's; any
other value is a comma-separated list of data-centre ids, checked here so a typo fails before
RunPod is asked.
"""

from __future__ import annotations

import re

from notus_cli.errors import ConfigError

ICELAND = ("EUR-IS-1", "EUR-IS-2", "EUR-IS-3")
EUROPE = (*ICELAND, "EUR-NO-1", "EU-SE-1", "EU-RO-1", "EU-CZ-1", "EU-NL-1", "EU-FR-1")
REGIONS = {"is": ICELAND, "eu": EUROPE}
DATA_CENTRE = re.compile(r"^(EUR?|US|CA|AP|OC)-[A-Z]{2,3}-\d{1,2}$")


def resolve_locations(region: str | None) -> str | None:
    """`saveEndpoint`'s `locations` for a region name or id list; None means anywhere.

    Raises ConfigError naming --region and what it accepts.
    """
    if region is None or not region.strip():
        return None
    named = REGIONS.get(region.strip().lower())
    if named is not None:
        return ",".join(named)
    ids = [part.strip().upper() for part in region.split(",") if part.strip()]
    bad = [part for part in ids if not DATA_CENTRE.match(part)]
    if bad:
        raise ConfigError(
            f"--region: '{bad[0]}' is not a region or data-centre id",
            hint=f"use is, eu, or ids such as {', '.join(EUROPE[:4])}",
        )
    return ",".join(dict.fromkeys(ids))
