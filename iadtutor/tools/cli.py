"""The ``iadtutor`` command.

``iadtutor evaluate``  one method on one category, last stdout line = one JSON object (DESIGN.md contract)
``iadtutor data make-toy --out DIR``  write the toy factory
``iadtutor data download|verify``  real datasets (see data_scripts/)
``iadtutor reproduce``  papermill / evaluate sweeps with result tables
``iadtutor info``  device, torch and which backbone ``auto`` picks
"""

from __future__ import annotations

import argparse
import json
import sys

from iadtutor.pipeline import MAX_TRAIN, METHODS

EVALUATE_METHODS = (*METHODS, "ulsad")


def parse_layers(text: str, method: str) -> tuple[int, ...]:
    """``--layers``: ``auto`` (the method's taps in :data:`iadtutor.pipeline.METHODS`) or taps such as ``1,2``
    (``iadtutor evaluate``, through :func:`embedding_config`)."""
    if text == "auto":
        return METHODS[method].layers if method in METHODS else (0, 1, 2)
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"--layers must be 'auto' or comma-separated taps from 0, 1, 2; got {text!r}.") from None


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The options of ``iadtutor evaluate`` (README "Two commands"); returns their actions, from which
    :func:`evaluate_options` reads names, defaults and types."""
    actions = []

    def add(*flags, **options):
        actions.append(parser.add_argument(*flags, **options))

    add("--data-root", required=True, help="folder holding the category folders")
    add("--category", required=True)
    add("--method", required=True, choices=EVALUATE_METHODS)
    add("--backbone", default="auto", choices=("auto", "resnet18", "wide_resnet50_2", "efficientnet_lite0"))
    add("--weights", default=None, help="checkpoint file for the backbone (sha256-checked)")
    add("--layout", default="auto", help="dataset layout (auto, mvtec_ad, mvtec_loco, visa, btad, mpdd)")
    add("--window", type=int, default=None, help="LWinNN window size δ (default 7)")
    add("--k", type=int, default=None, help="neighbours: LDKNN local density, or averaged by knn (default 5)")
    add("--alpha", type=float, default=None, help="LDKNN local-density coefficient α (default 1)")
    add("--squared", action="store_true", default=None, help="knn/LDKNN with squared L2 (REB's code)")
    add("--coreset", type=float, default=None,
        help="coreset fraction (default: 0.01 for patchcore and global, 1.0 = full bank for knn and ldknn)")
    add("--image-score", default=None, choices=("max", "blocks", "reweighted"),
        help="image score: max patch score; blocks: max of 3x3 block means (REB's code, knn/ldknn default); "
             "reweighted: PatchCore's eq. 7")
    add("--layers", default="auto",
        help="backbone taps to embed, e.g. 0,1,2 (auto: the method's, 1,2 for patchcore, knn and ldknn)")
    add("--dimension", type=int, default=None,
        help="patchcore/knn/ldknn: neighbourhood features averaged to this length (default 1024 / 152)")
    add("--image-size", type=int, default=256)
    add("--square", action="store_true", help="resize to a square (default: shorter side, aspect kept)")
    add("--no-normalize", action="store_true", help="skip ImageNet normalisation (ablation)")
    add("--no-pool", action="store_true", help="skip 3x3 average pooling (ablation)")
    add("--padded-pool", action="store_true",
        help="3x3 pooling padded to keep the map size (default: unpadded, like LWinNN's code)")
    add("--interpolation", default="bilinear", choices=("bilinear", "nearest"))
    add("--max-train", type=int, default=None,
        help=f"use at most this many train images (default: {MAX_TRAIN} for lwinnn as its code, else all)")
    add("--batch-size", type=int, default=16)
    add("--epochs", type=int, default=None, help="ULSAD training epochs")
    add("--ulsad-preset", default="paper", choices=("paper", "small"),
        help="ULSAD networks: the paper's, or narrow ones for a CPU (ULSADConfig.small)")
    add("--bootstrap", type=int, default=1000, help="bootstrap resamples for AUROC intervals (0: none)")
    add("--device", default="auto", help="auto, cpu or cuda")
    add("--seed", type=int, default=0)
    add("--json", default=None, help="also write the result object to this file")
    add("--quiet", action="store_true", help="no progress bars")
    return actions


def evaluate_options(data_root, category: str, method: str, **options) -> argparse.Namespace:
    """The options ``iadtutor evaluate`` sees for ``--data-root DATA_ROOT --category ... --method ...``
    plus ``--NAME VALUE`` per option, built without a command line (the in-process runs of notebook 08,
    :func:`iadtutor.tools.study.run_in_process`). A value is taken as :func:`iadtutor.tools.runs.command_for`
    passes it: ``None`` / ``False`` leave the default, ``True`` sets a switch, any other value goes through
    the flag's type as its text."""
    if method not in EVALUATE_METHODS:
        raise ValueError(f"method must be one of {', '.join(EVALUATE_METHODS)}; got {method!r}.")
    actions = {action.dest: action for action in add_evaluate_arguments(argparse.ArgumentParser())}
    values = {dest: action.default for dest, action in actions.items()}
    values.update(data_root=str(data_root), category=category, method=method)
    for name, value in options.items():
        action, flag = actions.get(name), "--" + name.replace("_", "-")
        if action is None or action.required:
            raise ValueError(f"iadtutor evaluate has no option {flag}.")
        if value is None or value is False:
            continue
        if action.nargs == 0:  # a switch such as --keep-aspect
            if value is not True:
                raise ValueError(f"{flag} is a switch: give true or leave it out; got {value!r}.")
            value = action.const
        elif value is True:
            raise ValueError(f"{flag} needs a value; got True.")
        else:
            value = (action.type or str)(str(value))
        if action.choices and value not in action.choices:
            raise ValueError(f"{flag} must be one of {', '.join(action.choices)}; got {value!r}.")
        values[name] = value
    return argparse.Namespace(**values)


def method_arguments(args: argparse.Namespace) -> dict:
    """The kNN parameters given on the command line that ``args.method`` reads (:data:`METHODS`). Others
    are accepted and left out, as the DESIGN.md contract lets tools pass ``--window`` / ``--k`` to every
    method; the JSON record's ``params`` shows what was used. Used by ``iadtutor evaluate`` and the
    in-process runs of notebook 08 (:mod:`iadtutor.tools.study`)."""
    reads = METHODS[args.method].params if args.method in METHODS else {}
    return {name: getattr(args, name) for name in reads if getattr(args, name) is not None}


def embedding_config(args: argparse.Namespace):
    """The :class:`iadtutor.embed.EmbeddingConfig` of the ``evaluate`` options, with the method's taps from
    :data:`METHODS` for ``--layers auto``: the one place options become a config (``iadtutor evaluate``
    and the in-process runs of notebook 08)."""
    from iadtutor.pipeline import method_config

    changes = dict(keep_aspect=not args.square, normalize=not args.no_normalize, pool=not args.no_pool,
                   pool_padding=args.padded_pool, interpolation=args.interpolation,
                   layers=parse_layers(args.layers, args.method))
    if args.dimension is not None:
        changes["dimension"] = args.dimension
    return method_config(args.method if args.method in METHODS else "lwinnn", args.image_size, **changes)


def max_train(args: argparse.Namespace) -> int | None:
    """``--max-train``, else the method's cap (:data:`METHODS`: 750 for LWinNN, as its code)."""
    if args.max_train is not None:
        return args.max_train
    return METHODS[args.method].max_train if args.method in METHODS else None


def evaluate_command(args: argparse.Namespace) -> int:
    """``iadtutor evaluate`` (README "Two commands", ``iadtutor reproduce``'s runs): prints one JSON record."""
    import torch

    from iadtutor import pipeline
    from iadtutor.backbones import load_backbone, resolve_device
    from iadtutor.files import write_json_atomic

    torch.manual_seed(args.seed)
    device = resolve_device(args.device)
    progress = not args.quiet
    params, config = method_arguments(args), embedding_config(args)
    category = pipeline.load_category(args.data_root, args.category, image_size=args.image_size,
                                      keep_aspect=not args.square, layout=args.layout, max_train=max_train(args),
                                      with_validation=args.method == "ulsad", progress=progress)
    backbone = load_backbone(args.backbone, device=device, weights_path=args.weights, verbose=True)
    if args.method == "ulsad":
        from iadtutor.ulsad import ULSADConfig, evaluate_ulsad

        ulsad_config = None  # the paper's networks at the images' size
        if args.ulsad_preset == "small":
            size = max(64, 32 * round(args.image_size / 32))
            ulsad_config = ULSADConfig.small(image_size=size)  # the blur scaled with the size
        result = pipeline.record_header(category, "ulsad", backbone, args.image_size, device, args.seed)
        result.update(evaluate_ulsad(category, backbone, epochs=args.epochs, device=device, seed=args.seed,
                                     bootstrap=args.bootstrap, progress=progress, config=ulsad_config))
        result["ulsad_preset"] = args.ulsad_preset
    else:
        result = pipeline.evaluate(category, args.method, backbone, config, batch_size=args.batch_size,
                                   device=device, seed=args.seed, bootstrap=args.bootstrap, progress=progress,
                                   **params)
    if args.json:
        write_json_atomic(args.json, result)
    print(json.dumps(result))
    return 0


def make_toy_command(args: argparse.Namespace) -> int:
    """``iadtutor data make-toy`` (README "Two commands"; ``make toy``)."""
    from iadtutor.tools.toy import make_toy

    make_toy(args.out, seed=args.seed, categories=args.categories, image_size=args.image_size,
             translation=args.translation, rotation=args.rotation, progress=not args.quiet,
             overwrite=args.overwrite)
    return 0


def info_command(args: argparse.Namespace) -> int:
    """``iadtutor info`` (README "Weights"): device, torch and the backbone ``auto`` picks."""
    import torch

    from iadtutor.backbones import resolve_backbone_name, resolve_device

    print(f"torch {torch.__version__}; device auto -> {resolve_device('auto')}; "
          f"CUDA available: {torch.cuda.is_available()}; CPU threads: {torch.get_num_threads()}")
    resolve_backbone_name("auto", download=not args.offline, verbose=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The parser of the ``iadtutor`` command and all its sub-commands (:func:`main`)."""
    parser = argparse.ArgumentParser(prog="iadtutor", description="Industrial anomaly detection course tools.")
    commands = parser.add_subparsers(dest="command", required=True)

    evaluate = commands.add_parser("evaluate", help="evaluate one method on one category")
    add_evaluate_arguments(evaluate)
    evaluate.set_defaults(handler=evaluate_command)

    data = commands.add_parser("data", help="datasets: make-toy, download, verify")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    toy = data_commands.add_parser("make-toy", help="write the toy factory in MVTec AD layout")
    toy.add_argument("--out", required=True)
    toy.add_argument("--categories", default=None, help="comma-separated subset (default: all)")
    toy.add_argument("--seed", type=int, default=0)
    toy.add_argument("--image-size", type=int, default=256)
    toy.add_argument("--translation", type=float, default=None, help="max shift, fraction of the image side")
    toy.add_argument("--rotation", type=float, default=None, help="max rotation in degrees")
    toy.add_argument("--quiet", action="store_true")
    toy.add_argument("--overwrite", action="store_true", help="replace a non-empty --out once the new one is written")
    toy.set_defaults(handler=make_toy_command)
    _add_optional_commands(commands, data_commands)

    info = commands.add_parser("info", help="device and backbone check")
    info.add_argument("--offline", action="store_true", help="do not try to download ResNet18 weights")
    info.set_defaults(handler=info_command)
    return parser


def _add_optional_commands(commands, data_commands) -> None:
    """Sub-commands whose modules live beside this one (reproduction runs, dataset downloads)."""
    from iadtutor.tools import download, runs

    for name, help_text, add_arguments, handler in (
            ("download", "download and verify a public dataset", download.add_download_arguments,
             download.download_command),
            ("verify", "verify a dataset folder against known counts", download.add_verify_arguments,
             download.verify_command),
            ("hold-out", "copy a category, holding out training normals as test/good",
             download.add_hold_out_arguments, download.hold_out_command),
            ("prepare-visa", "split VisA into the MVTec AD layout (1cls split)",
             download.add_prepare_visa_arguments, download.prepare_visa_command)):
        sub = data_commands.add_parser(name, help=help_text)
        add_arguments(sub)
        sub.set_defaults(handler=handler)
    reproduce = commands.add_parser("reproduce", help="papermill / evaluate sweeps with result tables")
    runs.add_reproduce_arguments(reproduce)
    reproduce.set_defaults(handler=runs.reproduce_command)


def main(argv: list[str] | None = None) -> int:
    """The ``iadtutor`` console script (pyproject ``[project.scripts]``); errors as one line on stderr."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as error:
        # One clear sentence on stderr, non-zero exit (DESIGN.md contract).
        print(f"iadtutor {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
