"""Report sections on what participants hold: prepaid budgets and energy certificates.

Both read only the result folder: budgets.csv (a clearing with prepaid accounts) and
settlement/certificates.json (kept by ``gridmatch certificates list`` after attest).
"""

from __future__ import annotations

from pathlib import Path

from gridmatch.report import markup as html
from gridmatch.results_io.certificates import read_certificates_snapshot
from gridmatch.results_io.folder import read_budgets
from gridmatch.results_io.layout import BUDGETS_FILE, CERTIFICATES_SNAPSHOT_FILE


def budgets_section(out_dir: Path) -> str:
    """Return what each prepaid account could spend, spent and has left (or nothing)."""
    rows = read_budgets(out_dir)
    if rows is None:
        return ""
    table = html.table(
        ["participant", "could spend EUR", "spent EUR", "left EUR"],
        [
            [
                r.participant_id,
                html.number(r.opening_eur, 6),
                html.number(r.spent_eur, 6),
                html.number(r.left_eur, 6),
            ]
            for r in rows
        ],
        text_columns=[0],
    )
    text = html.paragraph(
        f"From {BUDGETS_FILE}: a buyer's trades cost (quantity x (price + fee)) at most what "
        "its prepaid account holds, spent in delivery order; orders.csv says 'budget' for an "
        "order money left short."
    )
    return html.section("budgets", "Prepaid budgets", text + table)


def certificates_section(out_dir: Path) -> str:
    """Certificates held and retired (empty unless the folder was settled and listed)."""
    snapshot = read_certificates_snapshot(out_dir)
    if snapshot is None:
        return ""
    active = html.table(
        ["id", "device", "production", "units", "active Wh", "holders"],
        [
            [
                str(b.certificate_id),
                b.device_name,
                f"{b.production_starting_interval} - {b.production_ending_interval}",
                f"{b.certificate_bundle_id_range_start}-{b.certificate_bundle_id_range_end}",
                str(b.bundle_quantity),
                ", ".join(f"{name} {wh}" for name, wh in b.holdings.items()),
            ]
            for b in snapshot.active
        ],
        text_columns=[1, 2, 5],
    )
    body = (
        html.paragraph(
            f"{snapshot.issued_wh} Wh issued for quorum-verified generation (one certificate per "
            f"seller and hour, 1 unit = 1 Wh), as of the last `gridmatch certificates list` "
            f"({CERTIFICATES_SNAPSHOT_FILE}; contract {snapshot.certificates_contract}, chain "
            f"{snapshot.chain_id})."
        )
        + html.heading("Active")
        + active
    )
    if snapshot.claimed:
        body += html.heading("Retired (claimed, final)") + html.table(
            ["id", "device", "units", "Wh", "holder", "beneficiary", "purpose"],
            [
                [
                    str(b.certificate_id),
                    b.device_name,
                    f"{b.certificate_bundle_id_range_start}-{b.certificate_bundle_id_range_end}",
                    str(b.bundle_quantity),
                    b.account_name,
                    b.beneficiary,
                    b.claim_purpose,
                ]
                for b in snapshot.claimed
            ],
            text_columns=[1, 4, 5, 6],
        )
    return html.section("certificates", "Energy certificates", body)
