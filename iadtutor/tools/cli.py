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
    """``--layers``: ``auto`` (the method's taps in :data:`iadtutor.pipeline.METHODS`) or taps such as ``1,2``."""
    if text == "auto":
        return METHODS[method].layers if method in METHODS else (0, 1, 2)
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"--layers must be 'auto' or comma-separated taps from 0, 1, 2; got {text!r}.") from None


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", required=True, help="folder holding the category folders")
    parser.add_argument("--category", required=True)
    parser.add_argument("--method", required=True, choices=EVALUATE_METHODS)
    parser.add_argument("--backbone", default="auto",
                        choices=("auto", "resnet18", "wide_resnet50_2", "efficientnet_lite0"))
    parser.add_argument("--weights", default=None, help="checkpoint file for the backbone (sha256-checked)")
    parser.add_argument("--layout", default="auto", help="dataset layout (auto, mvtec_ad, mvtec_loco, visa, btad, mpdd)")
    parser.add_argument("--window", type=int, default=None, help="LWinNN window size δ (default 7)")
    parser.add_argument("--k", type=int, default=None,
                        help="neighbours: LDKNN local density, or averaged by knn (default 5)")
    parser.add_argument("--alpha", type=float, default=None, help="LDKNN local-density coefficient α (default 1)")
    parser.add_argument("--squared", action="store_true", default=None, help="knn/LDKNN with squared L2 (REB's code)")
    parser.add_argument("--coreset", type=float, default=None,
                        help="coreset fraction (default: 0.01 for patchcore, 1.0 = full bank for knn and ldknn)")
    parser.add_argument("--layers", default="auto",
                        help="backbone taps to embed, e.g. 0,1,2 (auto: 1,2 for ldknn and knn as in REB, else 0,1,2)")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--keep-aspect", action="store_true", help="resize the shortest side, keep aspect ratio")
    parser.add_argument("--no-normalize", action="store_true", help="skip ImageNet normalisation (ablation)")
    parser.add_argument("--no-pool", action="store_true", help="skip 3x3 average pooling (ablation)")
    parser.add_argument("--unpadded-pool", action="store_true", help="AvgPool2d(3, 1) without padding, like the reference code")
    parser.add_argument("--interpolation", default="bilinear", choices=("bilinear", "nearest"))
    parser.add_argument("--max-train", type=int, default=MAX_TRAIN, help="use at most this many train images")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=None, help="ULSAD training epochs")
    parser.add_argument("--ulsad-preset", default="paper", choices=("paper", "small"),
                        help="ULSAD networks: the paper's, or narrow ones for a CPU (ULSADConfig.small)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for AUROC intervals (0: none)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the result object to this file")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def method_arguments(args: argparse.Namespace) -> dict:
    """The kNN parameters given on the command line that ``args.method`` reads (:data:`METHODS`). Others
    are accepted and left out, as the DESIGN.md contract lets tools pass ``--window`` / ``--k`` to every
    method; the JSON record's ``params`` shows what was used."""
    reads = METHODS[args.method].params if args.method in METHODS else {}
    return {name: getattr(args, name) for name in reads if getattr(args, name) is not None}


def embedding_config(args: argparse.Namespace):
    """The :class:`iadtutor.embed.EmbeddingConfig` of the ``evaluate`` flags."""
    from iadtutor.embed import EmbeddingConfig

    return EmbeddingConfig(image_size=args.image_size, keep_aspect=args.keep_aspect,
                           normalize=not args.no_normalize, pool=not args.no_pool,
                           pool_padding=not args.unpadded_pool, interpolation=args.interpolation,
                           layers=parse_layers(args.layers, args.method))


def evaluate_command(args: argparse.Namespace) -> int:
    import torch

    from iadtutor import pipeline
    from iadtutor.backbones import load_backbone, resolve_device
    from iadtutor.files import write_json_atomic

    torch.manual_seed(args.seed)
    device = resolve_device(args.device)
    progress = not args.quiet
    params, config = method_arguments(args), embedding_config(args)
    category = pipeline.load_category(args.data_root, args.category, image_size=args.image_size,
                                      keep_aspect=args.keep_aspect, layout=args.layout, max_train=args.max_train,
                                      with_validation=args.method == "ulsad", progress=progress)
    backbone = load_backbone(args.backbone, device=device, weights_path=args.weights, verbose=True)
    if args.method == "ulsad":
        from iadtutor.ulsad import ULSADConfig, evaluate_ulsad

        ulsad_config = None  # the paper's networks at the images' size
        if args.ulsad_preset == "small":
            size = max(64, 32 * round(args.image_size / 32))
            ulsad_config = ULSADConfig.small(image_size=size, blur_sigma=4.0 * size / 256)
        result = {"method": "ulsad", "backbone": backbone.name, "category": args.category,
                  "layout": category.layout, "n_train": len(category.train.labels),
                  "n_test": len(category.test.labels), "image_size": args.image_size, "device": str(device),
                  "seed": args.seed}
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
    from iadtutor.tools.toy import make_toy

    make_toy(args.out, seed=args.seed, categories=args.categories, image_size=args.image_size,
             translation=args.translation, rotation=args.rotation, progress=not args.quiet)
    return 0


def info_command(args: argparse.Namespace) -> int:
    import torch

    from iadtutor.backbones import resolve_backbone_name, resolve_device

    print(f"torch {torch.__version__}; device auto -> {resolve_device('auto')}; "
          f"CUDA available: {torch.cuda.is_available()}; CPU threads: {torch.get_num_threads()}")
    resolve_backbone_name("auto", download=not args.offline, verbose=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
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
    toy.set_defaults(handler=make_toy_command)
    _add_optional_commands(commands, data_commands)

    info = commands.add_parser("info", help="device and backbone check")
    info.add_argument("--offline", action="store_true", help="do not try to download ResNet18 weights")
    info.set_defaults(handler=info_command)
    return parser


def _add_optional_commands(commands, data_commands) -> None:
    """Sub-commands whose modules live beside this one (reproduction runs, dataset downloads)."""
    from iadtutor.tools import download, runs

    download_parser = data_commands.add_parser("download", help="download and verify a public dataset")
    download.add_download_arguments(download_parser)
    download_parser.set_defaults(handler=download.download_command)
    verify_parser = data_commands.add_parser("verify", help="verify a dataset folder against known counts")
    download.add_verify_arguments(verify_parser)
    verify_parser.set_defaults(handler=download.verify_command)
    hold_out = data_commands.add_parser("hold-out", help="copy a category, holding out training normals as test/good")
    download.add_hold_out_arguments(hold_out)
    hold_out.set_defaults(handler=download.hold_out_command)
    visa = data_commands.add_parser("prepare-visa", help="split VisA into the MVTec AD layout (1cls split)")
    download.add_prepare_visa_arguments(visa)
    visa.set_defaults(handler=download.prepare_visa_command)
    reproduce = commands.add_parser("reproduce", help="papermill / evaluate sweeps with result tables")
    runs.add_reproduce_arguments(reproduce)
    reproduce.set_defaults(handler=runs.reproduce_command)


def main(argv: list[str] | None = None) -> int:
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
