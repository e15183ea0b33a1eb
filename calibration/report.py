"""The calibration report as Markdown tables (the JSON report holds the same figures and more)."""
from __future__ import annotations

from edge.modalities import SUBSETS


def markdown(report: dict) -> str:
    r = report["retention_test"]
    src = report["source"]
    lines = [
        f"# int8 calibration of `{report['bundle']}` -> `{report['out']}`",
        "",
        f"Data: {src.get('dataset', 'clips')} from `{src.get('data', '?')}` ({src.get('data_source', '?')}); "
        f"{report['clips']['calib']} calibration clips and {report['clips']['val']} validation clips (val split), "
        f"{report['clips']['test']} test clips (test split).",
        "",
        "## Accuracy retention on the test split (%)",
        "",
        "| subset | fp32 verb | fp32 noun | fp32 action | int8 verb | int8 noun | int8 action | action loss |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in SUBSETS:
        a, b = r["fp32"][s], r["int8"][s]
        lines.append(f"| {s} | {a['verb']:.1f} | {a['noun']:.1f} | {a['action']:.1f} | {b['verb']:.1f} | "
                     f"{b['noun']:.1f} | {b['action']:.1f} | {r['action_loss'][s]:+.1f} |")
    size, met = report["size"], report["targets"]["met"]
    lines += [
        "",
        f"Files: {size['int8_bytes'] / 1024:.0f} KiB int8 vs {size['fp32_bytes'] / 1024:.0f} KiB fp32 "
        f"({100 * size['ratio']:.1f} %). Targets: action loss <= {report['targets']['max_action_loss']} point "
        f"on every subset: {'met' if met['action_loss'] else 'MISSED'}; "
        f"size <= {100 * report['targets']['max_size_ratio']:.0f} %: {'met' if met['size'] else 'MISSED'}.",
        "",
        "## Quantization formats (median ms per batch-1 call, interleaved; file size)",
        "",
        "| role | variant | what | ms | KiB | chosen |",
        "|---|---|---|---|---|---|",
    ]
    for role, rows in report["variants"].items():
        for row in rows:
            mark = "yes" if report["choice"][role] == row["variant"] else ""
            lines.append(f"| {role} | {row['variant']} | {row['description']} | {row['median_ms']:.3f} | "
                         f"{row['bytes'] / 1024:.0f} | {mark} |")
    combos = report["combinations_val"]
    lines += [
        "",
        f"{len(combos)} int8 combinations scored on the validation split; the fastest meeting both targets is kept. "
        "Fastest five:",
        "",
        "| video / flow / audio / fusion | ms per prediction | size % | worst val action loss |",
        "|---|---|---|---|",
    ]
    for c in combos[:5]:
        ch = c["choice"]
        lines.append(f"| {ch['video_encoder']} / {ch['flow_encoder']} / {ch['audio_encoder']} / {ch['fusion']} | "
                     f"{c['ms']:.3f} | {100 * c['size_ratio']:.1f} | {c['worst_action_loss']:+.1f} |")
    kept = next(c for c in combos if c["choice"] == report["choice"])
    ch = kept["choice"]
    lines += ["", f"Kept: {ch['video_encoder']} / {ch['flow_encoder']} / {ch['audio_encoder']} / {ch['fusion']}, "
                  f"{kept['ms']:.3f} ms per prediction, {100 * kept['size_ratio']:.1f} % of the fp32 size, worst val "
                  f"action loss {kept['worst_action_loss']:+.1f} points."]
    lines += [
        "",
        "## Temperature scaling (fitted on the validation split; action-confidence ECE % on the test split)",
        "",
        "| subset | T | ECE before | ECE after |",
        "|---|---|---|---|",
    ]
    for s in SUBSETS:
        e = report["ece_test"][s]
        lines.append(f"| {s} | {report['temperatures'][s]:.3f} | {e['before']:.1f} | {e['after']:.1f} |")
    return "\n".join(lines) + "\n"
