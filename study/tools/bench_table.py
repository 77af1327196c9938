"""The benchmark's result (``benchmark.run``) as the table ``make bench`` prints."""
from __future__ import annotations


def format_table(result: dict) -> str:
    net, lim, cfg = result["network"], result["limit"], result["config"]
    lines = [
        f"{net['dataset']} {'-'.join(map(str, net['sizes']))} {net['activation']} MLP, {net['dtype']}, "
        f"{net['parameters']} parameters, {net['train_samples']} training samples; one BLAS thread",
        f"epochs {cfg['epochs']} (batch 1: {cfg['epochs_stochastic']}), median of at least {cfg['repeats']} repeats "
        f"(a cell repeats for {cfg['min_cell_seconds']:g} s at least); "
        f"arithmetic limit {lim['ms_per_epoch']:.3f} ms/epoch at {lim['gflops']:.1f} GFLOP/s",
        "",
        f"{'solver':8s} {'batch':>5s} | {'ms/epoch: sklearn':>17s} {'ours':>8s} {'no-val':>8s} {'readable':>8s} | "
        f"{'x faster':>8s} {'no-val':>7s} | {'x limit':>7s} {'no-val':>7s} | {'test acc: sklearn':>17s} {'ours':>11s}",
    ]
    lines.append("-" * len(lines[-1]))
    for c in result["cells"]:
        ms, sp, xl, acc = c["ms_per_epoch"], c["speedup_vs_sklearn"], c["x_limit"], c["test_accuracy"]
        flag = "" if acc["within_noise"] else "  (accuracy gap beyond noise)"
        if any(c["diverged"].values()):
            flag += "  DIVERGED: " + ",".join(v for v, d in c["diverged"].items() if d)
        if c["short_runs"]:
            flag += f"  {len(c['short_runs'])} short run(s)"
        if not c["validate_changes_nothing"]:
            flag += "  (validation changed training!)"
        lines.append(
            f"{c['solver']:8s} {c['batch_size']:>5s} | {ms['sklearn']:17.2f} {ms['ours']:8.2f} {ms['ours_noval']:8.2f} "
            f"{ms['readable']:8.2f} | {sp['ours']:8.1f} {sp['ours_noval']:7.1f} | {xl['ours']:7.1f} "
            f"{xl['ours_noval']:7.1f} | {acc['sklearn']['mean']:9.3f}±{acc['sklearn']['sd']:.3f} "
            f"{acc['ours']['mean']:5.3f}±{acc['ours']['sd']:.3f}{flag}")
    lines.append("ours: the compiled path (train.train for an MLP) with the per-epoch validation pass, no-val without "
                 "it; readable: the numpy path it is tested against (no validation)")
    pop = result["population"]
    for block in ([pop, pop.get("small_dataset")] if pop else []):
        if not block:
            continue
        where = f"{block['dataset']} {'-'.join(map(str, block['sizes']))}"
        lines += ["", f"population: ms per network-epoch, K networks in one pass ({where}, {block['solver']}, "
                      f"validation on)",
                  f"{'batch':>5s} | " + " ".join(f"{'K=' + str(k):>8s}" for k in block["ks"]) + " | best"]
        for b, row in block["ms_per_network_epoch"].items():
            gain = block["best_k_speedup_vs_k1"].get(b)
            lines.append(f"{b:>5s} | " + " ".join(f"{row[str(k)]:8.3f}" for k in block["ks"])
                         + f" | K={block['best_k'][b]}" + (f" ({gain:.2f}x K=1)" if gain else ""))
    lines += ["", "targets (performance issue; like for like = ours without validation; reported, not asserted):"]
    for t in result["targets"]:
        lines.append(f"  {t['target']:19s} {t['solver']:8s} want {t['want']:7s} measured {t['like_for_like']:6.1f} "
                     f"(with validation {t['with_validation']:.1f})  {'met' if t['met'] else 'NOT met'}")
    sweep = result["sweep"]
    if not sweep["measured"]:
        lines += ["", sweep["note"]]
    else:
        targets = sweep["targets"]
        lines += ["", f"{sweep['sweep']} sweep (its own record, {sweep['workers']} worker(s)): "
                      f"{sweep['wall_seconds']:.0f} s wall, {sweep['network_epochs']:.0f} network-epochs, "
                      f"{sweep['network_epochs_per_second']:.0f} network-epochs/s; tracking "
                      f"{100 * sweep['tracking_share']:.1f}%, optuna {100 * sweep['optuna_share']:.1f}% of wall time"]
        if sweep["sweep"] == "default":  # the targets are the default profile's
            lines.append(f"  wall time want {targets['wall_seconds']['want']} s: "
                         f"{'met' if targets['wall_seconds']['met'] else 'NOT met'}; tracking + optuna want "
                         f"{targets['tracking_and_optuna_share']['want']}: "
                         f"{'met' if targets['tracking_and_optuna_share']['met'] else 'NOT met'}")
    load = result["environment"]["load_average_before"][0], result["environment"]["load_average_after"][0]
    cores = result["environment"]["cores"] or 1
    if max(load) > 0.5 * cores:
        lines.append(f"note: load average {load[0]:.2f} -> {load[1]:.2f} on {cores} cores: other work shared the "
                     "machine; ratios (measured side by side) are more trustworthy than absolute times")
    lines.append(f"({result['seconds']:.0f} s)")
    return "\n".join(lines)
