"""The network: VGG's layer tables, its layers written out, and one VGG that runs them.

- :mod:`.arch` — the VGG16/VGG19 layer tables and the checks of names and weights against them;
- :mod:`.inputs` — the input conventions a network's weights can expect (Caffe's, torchvision's);
- :mod:`.layers` — the reference layers: conv, ReLU, pooling, each a forward/backward pair;
- :mod:`.fast` — the same layers fast (channels last, Winograd, fused steps);
- :mod:`.kernels` — the kernel sets, one object per set of layer functions;
- :mod:`.vgg` — :class:`~.vgg.VGG`, one loop over the layer table with a kernel set.

Nothing here imports from the weights, the paper's math or the application.
"""
