r"""Fast kernels for the VGG conv stack: channels-last blobs and Winograd F(2×2, 3×3).

The functions here compute the layers of :mod:`refstyle.nn.layers` — Caffe's 3×3 pad-1
convolution with its in-place ReLU, and Caffe's 2×2 stride-2 pooling (ceil mode,
in-image divisor, first maximum) — and their input gradients, in a different order
of operations chosen for speed. :mod:`refstyle.nn.layers` stays the definition; the tests
(``tests/test_fastconv.py``) hold every function here against it, in float32 and
float64. :class:`refstyle.VGG` uses them (:mod:`refstyle.nn.kernels`) with ``kernels="fast"`` (or ``"im2col"``).

What makes them fast (each measured on a 2-core CPU, ``benchmarks/README.md``):

- **Channels last.** A blob is an ``(H, W, C)`` array (batch 1, as the network's
  input always is). A spatial shift is a slice over whole rows of ``C`` contiguous
  numbers, and a response viewed as ``(H·W, C)`` is already the matrix a GEMM wants.
  Caffe blobs are converted only at the network's edges (the image, the responses
  asked for, their gradients), in cache-sized blocks (:func:`nchw`, :func:`to_hwc`).
- **Winograd F(2×2, 3×3)** (Lavin & Gray, "Fast Algorithms for Convolutional Neural
  Networks", 2016) for every convolution with at least :data:`MIN_CHANNELS` input
  channels. Each 2×2 block of outputs comes from the 4×4 block of inputs around it:

  .. math:: Y = A^\top \Big[ \textstyle\sum_c (G\, g_{o,c}\, G^\top) \odot (B^\top d_c\, B) \Big] A

  so the channel sum becomes 16 independent matrix products, one per position
  :math:`\xi` of the 4×4 transformed tile, :math:`M_\xi = V_\xi U_\xi^\top` with
  :math:`V_\xi` (tiles × C) and :math:`U_\xi` (O × C): 16 multiplications per 4
  outputs instead of 36, 2.25× fewer FLOPs than im2col. The filter transform
  :math:`U = G g G^\top` (:func:`winograd_filters`, one small GEMM per layer) is
  computed anew in each sweep: keeping it would hold 16/9 of the weights' memory.
- **The input gradient is a convolution too**, with the filters flipped and their
  channel axes swapped (:func:`refstyle.nn.layers.conv_backward`); in the Winograd
  domain that is the same :math:`U` with its tile positions permuted and each
  :math:`U_\xi` transposed (:data:`BACKWARD_TILE`): one transform serves both ways.
- **Fused steps**: the bias is added once per tile, inside the output transform, and
  the ReLU is applied as the outputs are written; the ReLU's backward mask is kept
  as packed bits (:func:`relu_mask`, a 32nd of the response's memory) and applied
  while the gradient is copied into the padded band.
- **Bands and reused buffers**: the image is processed in bands of tile rows whose
  scratch arrays fit a fixed budget (:data:`BAND_BYTES`), carved from one
  :class:`Workspace` buffer kept between calls; the band's columns are stored
  even ones first, so that every transform step reads contiguous runs. Memory
  beyond a layer's input and output does not grow with the image.
- **Bands on every core** (:mod:`.threads`): the bands are independent, and NumPy
  releases the GIL in its ufuncs and matrix products, so the workspace runs them on
  ``threads`` Python threads at once (by default the cores this process may use), each
  band's transforms and GEMMs on one core: OpenBLAS is held to one thread per band
  while they run, and given its setting back after. The element-wise transforms, which
  a BLAS never threads, so run on all cores too; the pooling, the ReLU masks and
  ``conv1_1`` are banded the same way. A band computes the same numbers on any thread;
  with a device's array module (CuPy) the workspace has one thread.
- **Channel planes for the first layer** (:func:`planes_conv`): with ``C = 3``
  input channels Winograd gains nothing, so ``conv1_1`` is one im2col GEMM
  (``K = 27``) over shifted channel planes, and its input gradient a GEMM followed
  by col2im (nine shifted adds into three planes).

Rounding: Winograd F(2×2, 3×3)'s transforms use only the coefficients 0, ±½ and ±1,
so in float32 its results differ from the im2col reference by rounding only — a
relative error of 3e-7 to 7e-7 per layer, about 1e-6 through VGG19 and its losses,
the size of the reference's own float32 error (``benchmarks/accuracy.py``).
(F(4×4, 3×3) would save another 44% of the multiplications but, measured the same
way, has 1e-5 per layer.)

All functions take NumPy or CuPy arrays (the module ``xp`` is resolved from the
input with :func:`refstyle.backend.array_module`), in float32 or float64, and never
write into their inputs.
"""


from .conv import (
    METHODS,
    MIN_CHANNELS,
    SMALL_LAYER,
    ConvPlan,
    ConvReluCache,
    conv_plan,
    conv_relu_backward,
    conv_relu_forward,
    conv_relu_forward_with_z,
)
from .im2col import im2col_conv, im2col_filters, planes_conv, planes_conv_backward
from .layout import (
    BAND_BYTES,
    THREAD_BYTES,
    Workspace,
    add_nchw,
    band_rows,
    band_shape,
    hwc_view,
    mask_rows,
    nchw,
    nchw_view,
    padded_band,
    relu_mask,
    to_hwc,
)
from .pool import PoolCache, pool_backward, pool_forward
from .threads import blas_limit, blas_threads, cores, set_blas_threads
from .winograd import (
    BACKWARD_TILE,
    WINOGRAD_AT,
    WINOGRAD_BT,
    WINOGRAD_G,
    WINOGRAD_T,
    winograd_backward_filters,
    winograd_conv,
    winograd_filters,
)
