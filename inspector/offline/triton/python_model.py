"""Triton python-backend model: ONNX Runtime on the exported identity model (copied as ``model.py``).

For Triton builds without the onnxruntime backend (the CPU server bundled with ``nvidia-pytriton``,
used by the tests and the benchmark). It runs inside the server's own Python environment, not the
project's: it imports only numpy, onnxruntime and Triton's ``triton_python_backend_utils``.

At load it re-hashes ``model.onnx`` and refuses to start when the sha256 differs from the model
parameter ``inspector_sha256`` (the value the client checks), so the server never serves a file
other than the one it advertises. Requests gathered by the dynamic batcher run as one ONNX Runtime
batch and are split back per request.
"""

import hashlib
import json
import os

import numpy as np

SHA_PARAM = "inspector_sha256"


def _sha256(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


class TritonPythonModel:
    def initialize(self, args):
        import onnxruntime as ort

        config = json.loads(args["model_config"])
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        want = config.get("parameters", {}).get(SHA_PARAM, {}).get("string_value", "")
        got = _sha256(path)
        if got != want:
            raise RuntimeError(f"{path}: sha256 {got[:12]} does not match parameter {SHA_PARAM} {want[:12]}")
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(os.environ.get("INSPECTOR_TRITON_ORT_THREADS", "1"))
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        self.session = ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])
        self.input_name = config["input"][0]["name"]
        self.output_names = [o["name"] for o in config["output"]]

    def execute(self, requests):
        import triton_python_backend_utils as pb_utils

        arrays = [pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests]
        sizes = [len(a) for a in arrays]
        x = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
        outs = self.session.run(self.output_names, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})
        responses, start = [], 0
        for n in sizes:
            tensors = [pb_utils.Tensor(name, out[start:start + n]) for name, out in zip(self.output_names, outs)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += n
        return responses

    def finalize(self):
        self.session = None
