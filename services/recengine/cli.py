"""``recengine`` command line: trainer, index, api, generate, eval, dashboards, demo.

Every setting of :class:`recengine.config.Settings` is also a flag (``--batch-size 4096``) and
an environment variable (``RECENGINE_BATCH_SIZE``), read by the same parser; flags win. A bad
setting, URL or file stops the command with one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from recengine.config import Settings
from recengine.declare import settings_of
from recengine.errors import ConfigError, RecEngineError


def _settings_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("settings (also RECENGINE_<NAME> environment variables)")
    # Flags stay text: Settings.load parses them as it parses the environment.
    for s in settings_of(Settings):
        group.add_argument(s.flag, dest=s.name, default=None,
                           metavar="BOOL" if s.kind.name == "bool" else s.name.upper())


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    names = {s.name for s in settings_of(Settings)}
    return {k: v for k, v in vars(args).items() if k in names and v is not None}


def _settings(args: argparse.Namespace, **forced: Any) -> Settings:
    return Settings.load({**_overrides(args), **forced})


def cmd_trainer(args: argparse.Namespace) -> int:
    from recengine.trainer.run import run_trainer

    return run_trainer(_settings(args))


def cmd_serve(args: argparse.Namespace) -> int:
    from recengine import serve

    settings = _settings(args)
    # Open what the app will open, so a bad URL fails here with one line, not in a worker.
    if args.service == "index":
        from recengine.backends.registry import open_artifact_store

        open_artifact_store(settings.url("artifacts"))
    else:
        from recengine.api.app import create_app

        create_app(settings)
    argv = serve.gunicorn_argv(args.service, args.bind, args.workers, args.threads)
    os.execvpe(argv[0], argv, serve.settings_env(settings))
    return 0  # not reached


def cmd_topics(args: argparse.Namespace) -> int:
    from recengine.backends.registry import create_topics

    settings = _settings(args)
    for topic, outcome in create_topics(settings, args.partitions, args.replication).items():
        print(f"{topic}: {outcome}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from recengine.synth import SynthConfig, parse_time_scale, write_stream

    out = Path(args.out)
    if not out.parent.exists():
        raise ConfigError(f"output directory {out.parent} does not exist")
    try:
        config = SynthConfig(events=args.events, users=args.users, items=args.items,
                             seed=args.seed, malformed_rate=args.malformed_rate,
                             time_scale=parse_time_scale(args.time_scale))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    summary = write_stream(out, config, args.format)
    print(json.dumps({"path": str(out), **vars(summary)} if hasattr(summary, "__dict__")
                     else {"path": str(out)}, default=str))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from recengine.evaluate import evaluate_file

    path = Path(args.events)
    if not path.is_file():
        raise ConfigError(f"events file {path} does not exist")
    settings = _settings(args, follow=False)
    result = evaluate_file(path, settings, fmt=args.format or "auto", progress=not args.json,
                           plot=args.plot)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"events {result['events']}  evaluated {result['evaluated']}  "
              f"rejected {result['rejected']}")
        print(f"recall@10  model {result['recall_at_10']:.4f}  "
              f"popularity {result['popularity_recall_at_10']:.4f} (the stronger of all-time "
              f"{result['plain_popularity_recall_at_10']:.4f} and decayed "
              f"{result['decayed_popularity_recall_at_10']:.4f})  {result['ratio']:.2f}x")
        print("ranking in force: " + ", ".join(f"{k}={v}" for k, v in result["ranking"].items())
              + f" ({result['tuning']['switches']} switches)")
        print(f"{result['events_per_second']:.0f} events/s")
        if args.plot:
            print(f"plot: {args.plot}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from recengine.demo import run_demo

    return run_demo(args, _overrides(args))


def cmd_dashboards(args: argparse.Namespace) -> int:
    from recengine import dashboards, graphite_render

    boards = dashboards.load(args.dashboards)
    if not boards:
        raise ConfigError(f"no dashboards (*.json) in {args.dashboards}")
    try:
        if args.action == "render":
            if not args.out:
                raise ConfigError("dashboards render needs --out DIR")
            written = graphite_render.render(args.out, args.graphite, args.from_, boards)
            for path in written:
                print(path)
            return 0
        empty = graphite_render.check(args.graphite, args.from_, boards)
    except (OSError, RuntimeError, ValueError) as exc:  # graphite-web unreachable or refusing
        raise RecEngineError(f"graphite {args.graphite}: {exc}") from None
    for board, panel, target in empty:
        print(f"{board} / {panel}: no data for {target}")
    return 1 if empty else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recengine", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("trainer", help="learn from the event stream, publish versions")
    _settings_flags(p)
    p.set_defaults(func=cmd_trainer)

    for service, port in (("index", 8081), ("api", 8080)):
        p = sub.add_parser(service, help=f"serve the {service} app under gunicorn")
        p.add_argument("--bind", default=f"0.0.0.0:{port}")
        p.add_argument("--workers", type=int, default=2)
        p.add_argument("--threads", type=int, default=None,
                       help="threads per worker (default 1: the inline worker; more selects "
                       "gunicorn's gthread worker)")
        _settings_flags(p)
        p.set_defaults(func=cmd_serve, service=service)

    p = sub.add_parser("topics", help="Kafka topics of the engine")
    p.add_argument("action", choices=("create",))
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument("--replication", type=int, default=1)
    _settings_flags(p)
    p.set_defaults(func=cmd_topics)

    p = sub.add_parser("generate", help="write a synthetic event stream")
    p.add_argument("--out", required=True)
    p.add_argument("--format", choices=("jsonl", "csv", "tsv"), default="jsonl")
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--users", type=int, default=5_000)
    p.add_argument("--items", type=int, default=3_000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--malformed-rate", type=float, default=0.005)
    p.add_argument("--time-scale", default="seconds",
                   help="mean time between consecutive events: seconds, minutes, hours, days "
                        "or a number of seconds (the same seed gives the same events, with "
                        "timestamps scaled)")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("eval", help="prequential evaluation of the trainer on a file")
    p.add_argument("--events", required=True, help="JSON lines, CSV or TSV file")
    p.add_argument("--format", choices=("csv", "tsv", "jsonl"), default=None)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plot", default=None, help="write recall over the stream to this PNG")
    _settings_flags(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("dashboards", help="draw the Grafana dashboards' panels through "
                       "graphite-web (render), or list their targets without data (check)")
    p.add_argument("action", choices=("render", "check"))
    p.add_argument("--out", default=None, help="render: directory for the PNG files")
    p.add_argument("--graphite", default=os.environ.get("RECENGINE_GRAPHITE_URL",
                                                        "http://127.0.0.1:8080"),
                   help="graphite-web base URL (default $RECENGINE_GRAPHITE_URL or "
                        "http://127.0.0.1:8080)")
    p.add_argument("--from", dest="from_", default="-15min",
                   help="start of the time range, in graphite's syntax (default -15min)")
    p.add_argument("--dashboards", default=None,
                   help="directory of dashboard JSON files (default: the built-in ones, as in "
                        "charts/recengine/dashboards/)")
    p.set_defaults(func=cmd_dashboards)

    p = sub.add_parser("demo", help="the whole engine on this machine, no servers needed")
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--json", action="store_true", help="print one final JSON object")
    p.add_argument("--serve", action="store_true", help="keep the services up until Ctrl-C")
    p.add_argument("--keep", action="store_true", help="keep the data directory")
    _settings_flags(p)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # Graphite times start with a dash (--from -15min), which argparse takes for an option.
    for n in range(len(argv) - 1):
        if argv[n] == "--from" and argv[n + 1].startswith("-"):
            argv[n:n + 2] = [f"--from={argv[n + 1]}", ""]
    args = parser.parse_args([a for a in argv if a != ""])
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"recengine: configuration error: {exc}", file=sys.stderr)
        return 2
    except RecEngineError as exc:
        print(f"recengine: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
