"""Command line for the data layer.

python -m metasparse.data fetch [--treebank NAME ...]    # download and verify the pinned files
python -m metasparse.data summary [--domain legal] [--language fi] [--extra path=P,lang=L,domain=D[,name=N]]
python -m metasparse.data check PATH [PATH ...]          # validate CoNLL-U files or folders
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from metasparse.data.cells import CellIndex, partition_cells
from metasparse.data.extra import ExtraTreebank
from metasparse.data.fetch import data_dir, fetch
from metasparse.data.registry import load_registry
from metasparse.data.validate import conllu_files, iter_errors, read_text
from metasparse.errors import ConfigValueError, ConlluFormatError, MetasparseError


def cmd_fetch(args: argparse.Namespace) -> int:
    paths = fetch(args.treebank or None, url_template=args.url_template, progress=sys.stderr.isatty())
    print(f"{len(paths)} pinned files verified in {data_dir()}")
    return 0


def format_summary(index: CellIndex, domains: list[str], languages: list[str]) -> str:
    """Markdown tables: sentences/words per language x domain, the legal cells, held-out cells."""
    reg = load_registry()
    langs, doms = index.languages, index.domains
    _, targets = partition_cells(index.cells, domains, languages)
    target_set = set(targets)
    out = [
        f"{len(langs)} languages, {len(doms)} domains, {len(index.cells)} cells "
        f"(treebank x domain), {sum(index.sentences(c) for c in index.cells)} sentences, "
        f"{sum(index.words(c) for c in index.cells)} words",
        "",
        "sentences / words per language and domain (* = held-out target cell)",
        "",
        "| lang | script | " + " | ".join(doms) + " | total |",
        "|---|---|" + "---:|" * (len(doms) + 1),
    ]
    scripts = {tb.lang: tb.script for tb in reg.treebanks}
    for lang in langs:
        row = [lang, scripts.get(lang, "?")]
        for dom in doms:
            cells = [c for c in index.cells if c.lang == lang and c.domain == dom]
            s, w = sum(index.sentences(c) for c in cells), sum(index.words(c) for c in cells)
            mark = "*" if any(c in target_set for c in cells) else ""
            row.append(f"{s} / {w}{mark}" if cells else "")
        cells = [c for c in index.cells if c.lang == lang]
        row.append(f"{sum(index.sentences(c) for c in cells)} / {sum(index.words(c) for c in cells)}")
        out.append("| " + " | ".join(row) + " |")
    legal = [c for c in index.cells if c.domain == "legal"]
    out += [
        "",
        f"legal cells: {len(legal)} in {len({c.lang for c in legal})} languages "
        f"({' '.join(sorted({c.lang for c in legal}))})",
        "",
        "| cell | train | dev | test |",
        "|---|---:|---:|---:|",
    ]
    for c in legal:
        train, dev, test = (index.sentences(c, s) for s in ("train", "dev", "test"))
        out.append(f"| {c} | {train} | {dev} | {test} |")
    if targets:
        out += [
            "",
            f"held out ({', '.join(domains + languages)}): {len(targets)} target cells, "
            f"{len(index.cells) - len(targets)} source cells",
        ]
    return "\n".join(out)


def parse_extra(spec: str) -> ExtraTreebank:
    """``path=P,lang=L,domain=D[,name=N]`` (the keys of a ``data.extra`` entry) as an entry."""
    fields = dict(part.split("=", 1) for part in spec.split(",") if "=" in part)
    unknown, missing = set(fields) - {"path", "lang", "domain", "name"}, {"path", "lang", "domain"} - set(fields)
    if unknown or missing or spec.count("=") != len(fields):
        raise ConfigValueError(
            f"--extra {spec}: expected path=P,lang=L,domain=D[,name=N]"
            + (f"; unknown {sorted(unknown)}" if unknown else "")
            + (f"; missing {sorted(missing)}" if missing else "")
        )
    return ExtraTreebank(**fields)


def cmd_summary(args: argparse.Namespace) -> int:
    from metasparse.data.extra import with_extra
    from metasparse.data.ud import load_ud  # datasets is slow to import: only here

    extra = [parse_extra(e) for e in args.extra]
    ds = with_extra(load_ud(), extra, split_seed=0, fractions=(0.7, 0.1, 0.2))
    print(format_summary(CellIndex(ds), args.domain, args.language))
    for e in extra:
        print(f"extra treebank: {e.lang}/{e.domain}/{e.treebank.removeprefix('UD_')} <- {e.path}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    n_files = n_errors = 0
    for target in args.paths:
        for f in conllu_files(target):
            n_files += 1
            try:
                errors = list(iter_errors(read_text(f), f))
            except ConlluFormatError as exc:
                errors = [exc]
            for err in errors[: args.max_errors]:
                print(err, file=sys.stderr)
            if len(errors) > args.max_errors:
                print(f"{f}: ... {len(errors) - args.max_errors} more error(s)", file=sys.stderr)
            n_errors += len(errors)
    print(f"{n_files} file(s) checked, {n_errors} error(s)")
    return 1 if n_errors else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m metasparse.data",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fetch", help="download and verify the pinned treebank files")
    p.add_argument("--treebank", action="append", help="only this treebank (repeatable)")
    p.add_argument("--url-template", help="URL with {treebank}, {commit}, {name} (default: UD's GitHub)")
    p.set_defaults(func=cmd_fetch)
    p = sub.add_parser("summary", help="cell table: language x domain, sentences / words")
    p.add_argument("--domain", action="append", default=[], help="mark this domain's cells as targets")
    p.add_argument("--language", action="append", default=[], help="mark this language's cells as targets")
    p.add_argument(
        "--extra",
        action="append",
        default=[],
        metavar="path=P,lang=L,domain=D[,name=N]",
        help="also a treebank outside the registry, as data.extra adds it to a run (repeatable)",
    )
    p.set_defaults(func=cmd_summary)
    p = sub.add_parser("check", help="validate CoNLL-U files or folders; exit 1 on any error")
    p.add_argument("paths", nargs="+", type=Path)
    p.add_argument("--max-errors", type=int, default=20, help="errors shown per file")
    p.set_defaults(func=cmd_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (MetasparseError, FileNotFoundError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
