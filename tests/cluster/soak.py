"""The long fault run (scripts/soak.sh): one cluster, one workload, many cycles
of the chosen faults, then the checker over the whole history.

    scripts/soak.sh --backend kafka --cycles 200 --faults kill-leader,partition-leader,pause-leader
"""
import argparse
import json
import os
import sys
import time

import checker
import faults
import harness


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="kafka", choices=sorted(harness.BACKENDS))
    parser.add_argument("--nodes", type=int, default=None, help="default: 3 for kafka, 1 for runnel")
    parser.add_argument("--cycles", type=int, default=100, help="rounds; each round runs every fault once")
    parser.add_argument("--faults", default="all", help=f"comma-separated, or all: {','.join(faults.FAULTS)}")
    parser.add_argument("--minutes", type=float, default=None, help="stop starting rounds after this long")
    parser.add_argument("--rate", type=float, default=100.0, help="records per second per writer")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a broker setting")
    parser.add_argument("--out", default=os.path.join(harness.ROOT, "target", "soak"))
    args = parser.parse_args()

    nodes = args.nodes or (3 if args.backend == "kafka" else 1)
    settings = dict(item.split("=", 1) for item in args.set)
    cluster = harness.Cluster(args.backend, nodes, settings=settings)
    names = list(faults.FAULTS) if args.faults == "all" else [f.strip() for f in args.faults.split(",") if f.strip()]
    unknown = [f for f in names if f not in faults.FAULTS]
    if unknown:
        sys.exit(f"soak: unknown faults {unknown}; known: {', '.join(faults.FAULTS)}")
    skipped = {f: why for f in names if (why := faults.applicable(f, cluster))}
    names = [f for f in names if f not in skipped]
    for f, why in skipped.items():
        print(f"soak: skipping {why}", flush=True)
    if not names:
        sys.exit("soak: no fault applies to this cluster")

    started = time.monotonic()
    deadline = started + args.minutes * 60 if args.minutes else None
    events = []
    anomalies, stats, error = [], {}, None

    def log(message):
        print(f"[{time.monotonic() - started:7.0f}s] {message}", flush=True)

    try:
        cluster.start()
        log(f"{nodes} {args.backend} node(s) up ({'network namespaces' if cluster.network.namespaces else 'loopback'}),"
            f" workdir {cluster.workdir}")
        run = faults.Run(cluster, rate=args.rate, log=log, max_seconds=10 ** 6)
        run.start()
        try:
            for cycle in range(args.cycles):
                if deadline and time.monotonic() > deadline:
                    log(f"time limit reached after {cycle} rounds")
                    break
                for name in names:
                    t = time.monotonic()
                    what = faults.FAULTS[name](run)
                    run.progressing()
                    events.append({"cycle": cycle + 1, "fault": name, "what": what, "seconds": round(time.monotonic() - t, 1)})
                    log(f"round {cycle + 1}/{args.cycles} {name}: {what} ({time.monotonic() - t:.1f}s)")
                    time.sleep(1.0)
            anomalies, stats = run.finish()
        finally:
            run.workload.stop()
    except Exception as e:  # the cluster did not survive a fault, or a wait ran out: that is a result too
        error = f"{type(e).__name__}: {e}"
        log(f"soak stopped: {error}")
    finally:
        cluster.close()

    counts = {}
    for e in events:
        counts[e["fault"]] = counts.get(e["fault"], 0) + 1
    valid = (error is None and not anomalies and stats.get("group_finished", False)
             and not stats.get("writer_errors") and not stats.get("unfinished_writers"))
    result = {
        "backend": args.backend, "nodes": nodes, "faults": counts, "rounds": len({e["cycle"] for e in events}),
        "minutes": round((time.monotonic() - started) / 60, 1), "stats": stats, "settings": cluster.settings,
        "anomalies": [list(a) for a in anomalies], "error": error, "valid": valid,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, time.strftime("soak-%Y%m%d-%H%M%S.json"))
    with open(path, "w") as f:
        json.dump({**result, "events": events}, f, indent=1)
    print()
    print(f"soak {args.backend} x{nodes}: {sum(counts.values())} faults in {result['rounds']} rounds, "
          f"{result['minutes']} min; {', '.join(f'{k} {v}' for k, v in counts.items())}")
    print(f"  records: {stats.get('acked', 0)} acknowledged of {stats.get('sent', 0)} sent, "
          f"{stats.get('in_log', 0)} in the log, group finished: {stats.get('group_finished')}")
    print(f"  checker: {checker.summary(anomalies) if not error else 'not run: ' + error}")
    print(f"  result: {'VALID' if valid else 'INVALID'} ({path}; cluster files in {cluster.workdir})")
    if valid:
        cluster.cleanup_files()
    sys.exit(0 if valid else 1)


if __name__ == "__main__":
    main()
