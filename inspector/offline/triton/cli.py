"""CLI: ``inspector export triton MODEL_DIR --out REPO`` (a Triton model repository from a verified model).

    inspector export triton models/excipient-identity-default/1 --out triton-repo            # GPU host, onnxruntime
    inspector export triton models/excipient-identity-default/1 --out triton-repo --tensorrt # + TensorRT fp16
    inspector export triton models/excipient-identity-default/1 --out test-repo --backend python  # CPU test server
"""

from __future__ import annotations

import argparse

from inspector.errors import InspectorError


def _export_group(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The ``export`` verb's sub-commands, created unless another plugin already made them."""
    parser = sub.choices.get("export")
    if parser is None:
        return sub.add_parser("export", help="export a trained model for serving").add_subparsers(
            dest="what", metavar="WHAT", required=True)
    for action in parser._actions:  # argparse has no public accessor for an existing group
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise RuntimeError("top-level command 'export' exists without sub-commands")


def register(sub: argparse._SubParsersAction, groups: dict[str, argparse._SubParsersAction]) -> None:
    p = _export_group(sub).add_parser(
        "triton", help="identity model version -> Triton Inference Server model repository")
    p.add_argument("model_dir", metavar="MODEL_DIR", help="a model version folder, e.g. models/<name>/<version>")
    p.add_argument("--out", required=True, metavar="REPO", help="Triton model repository folder")
    p.add_argument("--backend", choices=("onnxruntime", "python"), default="onnxruntime",
                   help="onnxruntime (production) or python (ONNX Runtime inside Triton's python backend, "
                        "for servers without the onnxruntime backend such as the CPU test server)")
    p.add_argument("--name", help="Triton model name (default: the manifest's)")
    p.add_argument("--triton-version", type=int, help="Triton version number (default: the manifest's version)")
    p.add_argument("--precision", choices=("fp32", "int8"), default="fp32")
    p.add_argument("--max-batch-size", type=int, default=64, help="largest batch (>= 20 tiles of a frame)")
    p.add_argument("--instance-kind", choices=("gpu", "cpu"), default="gpu")
    p.add_argument("--instance-count", type=int, default=1)
    p.add_argument("--tensorrt", action="store_true", help="TensorRT execution accelerator, fp16 (GPU)")
    p.add_argument("--trt-cache", metavar="PATH", help="TensorRT engine cache folder on the Triton host")
    p.add_argument("--queue-delay-us", type=int, default=2000, help="dynamic batcher's max queue delay")
    p.add_argument("--overwrite", action="store_true", help="replace an existing version folder")
    p.set_defaults(func=cmd_export_triton)


def cmd_export_triton(args: argparse.Namespace) -> int:
    from inspector.modelrepo import load_model_dir
    from inspector.offline.triton.export import SHA_PARAM, ExportOptions, write_repository

    md = load_model_dir(args.model_dir)  # ModelIntegrityError on a modified artifact: nothing is written
    if md.manifest.task != "excipient_identity":
        raise InspectorError(f"model {md.manifest.name}/{md.manifest.version} is for task {md.manifest.task!r}, "
                             f"not excipient_identity")
    opts = ExportOptions(backend=args.backend, name=args.name, version=args.triton_version, precision=args.precision,
                         max_batch_size=args.max_batch_size, instance_kind=args.instance_kind,
                         instance_count=args.instance_count, tensorrt=args.tensorrt, trt_cache_path=args.trt_cache,
                         queue_delay_us=args.queue_delay_us)
    root = write_repository(md, args.out, opts, overwrite=args.overwrite)
    from inspector.offline.triton.export import read_config

    cfg = read_config(root / "config.pbtxt")
    print(f"wrote {root}/config.pbtxt and {root}/{cfg.version_policy.specific.versions[0]}/model.onnx "
          f"({cfg.platform or cfg.backend}, max_batch_size {cfg.max_batch_size}, "
          f"{SHA_PARAM} {cfg.parameters[SHA_PARAM].string_value[:12]}…)")
    return 0
