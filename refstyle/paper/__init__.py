"""The paper's method: images and preprocessing, the losses and their gradients, the
conventions of other implementations, the objective, the optimisers, the synthesis, the
normalised network, and gradient checking. Each module is one concept of the paper's
Methods; they use the network (:mod:`refstyle.nn`) and the weights, never the application.
"""
