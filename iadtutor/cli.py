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

EVALUATE_METHODS = ("spade", "lwinnn", "patchcore", "ldknn", "knn", "ulsad")
# Backbone taps (0, 1, 2 = strides 4, 8, 16) of each method with --layers auto: REB's methods use its
# "phi_2 + phi_3" (strides 8 and 16: a quarter of the patches), the others all three (LWinNN, PatchCore).
DEFAULT_LAYERS = {"ldknn": (1, 2), "knn": (1, 2)}


def parse_layers(text: str, method: str) -> tuple[int, ...]:
    """``--layers``: ``auto`` (the method's default, :data:`DEFAULT_LAYERS`) or taps such as ``1,2``."""
    if text == "auto":
        return DEFAULT_LAYERS.get(method, (0, 1, 2))
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
    parser.add_argument("--window", type=int, default=7, help="LWinNN window size δ")
    parser.add_argument("--k", type=int, default=5, help="neighbours: LDKNN local density, or averaged by knn")
    parser.add_argument("--alpha", type=float, default=1.0, help="LDKNN local-density coefficient α")
    parser.add_argument("--squared", action="store_true", help="LDKNN with squared L2 (REB's code)")
    parser.add_argument("--coreset", type=float, default=None,
                        help="coreset fraction (default: 0.01 for patchcore, 1.0 = full bank for ldknn)")
    parser.add_argument("--layers", default="auto",
                        help="backbone taps to embed, e.g. 0,1,2 (auto: 1,2 for ldknn and knn as in REB, else 0,1,2)")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--keep-aspect", action="store_true", help="resize the shortest side, keep aspect ratio")
    parser.add_argument("--no-normalize", action="store_true", help="skip ImageNet normalisation (ablation)")
    parser.add_argument("--no-pool", action="store_true", help="skip 3x3 average pooling (ablation)")
    parser.add_argument("--unpadded-pool", action="store_true", help="AvgPool2d(3, 1) without padding, like the reference code")
    parser.add_argument("--interpolation", default="bilinear", choices=("bilinear", "nearest"))
    parser.add_argument("--max-train", type=int, default=750, help="use at most this many train images")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=None, help="ULSAD training epochs")
    parser.add_argument("--ulsad-preset", default="paper", choices=("paper", "small"),
                        help="ULSAD networks: the paper's, or narrow ones for a CPU (ULSADConfig.small)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for AUROC intervals (0: none)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the result object to this file")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def evaluate_command(args: argparse.Namespace) -> int:
    import torch

    from .files import write_json_atomic
    from .backbones import load_backbone, resolve_device
    from .embed import EmbeddingConfig, PatchEmbedder
    from .experiment import embed_category, load_category, score_category

    torch.manual_seed(args.seed)
    device = resolve_device(args.device)
    progress = not args.quiet
    config = EmbeddingConfig(image_size=args.image_size, keep_aspect=args.keep_aspect,
                             normalize=not args.no_normalize, pool=not args.no_pool,
                             pool_padding=not args.unpadded_pool, interpolation=args.interpolation,
                             layers=parse_layers(args.layers, args.method))
    category = load_category(args.data_root, args.category, image_size=args.image_size,
                             keep_aspect=args.keep_aspect, layout=args.layout, max_train=args.max_train,
                             with_validation=args.method == "ulsad", progress=progress)
    backbone = load_backbone(args.backbone, device=device, weights_path=args.weights, verbose=True)
    result = {"method": args.method, "backbone": backbone.name, "category": args.category,
              "layout": category.layout, "n_train": len(category.train.labels),
              "n_test": len(category.test.labels), "image_size": args.image_size, "device": str(device),
              "seed": args.seed}
    if args.method == "ulsad":
        from .ulsad import ULSADConfig, evaluate_ulsad

        config = None  # the paper's networks at the images' size
        if args.ulsad_preset == "small":
            size = max(64, 32 * round(args.image_size / 32))
            config = ULSADConfig.small(image_size=size, blur_sigma=4.0 * size / 256)
        result.update(evaluate_ulsad(category, backbone, epochs=args.epochs, device=device, seed=args.seed,
                                     bootstrap=args.bootstrap, progress=progress, config=config))
        result["ulsad_preset"] = args.ulsad_preset
    else:
        embedder = PatchEmbedder(backbone, config)
        embedded = embed_category(category, embedder, batch_size=args.batch_size, progress=progress)
        params = {"window": args.window, "k": args.k, "alpha": args.alpha, "coreset": args.coreset,
                  "squared": args.squared}
        scored = score_category(embedded, args.method, device=device, bootstrap=args.bootstrap,
                                seed=args.seed, progress=progress, **params)
        result.update(scored.metrics)
        result.update({"train_seconds": round(scored.train_seconds, 4),
                       "test_seconds_per_image": round(scored.test_seconds_per_image, 5),
                       "embedding": config.as_dict(), "params": params})
    if args.json:
        write_json_atomic(args.json, result)
    print(json.dumps(result))
    return 0


def make_toy_command(args: argparse.Namespace) -> int:
    from .toy import make_toy

    make_toy(args.out, seed=args.seed, categories=args.categories, image_size=args.image_size,
             translation=args.translation, rotation=args.rotation, progress=not args.quiet)
    return 0


def info_command(args: argparse.Namespace) -> int:
    import torch

    from .backbones import resolve_backbone_name, resolve_device

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
    from . import download, runs

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
