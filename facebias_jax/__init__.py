"""facebias_jax: find and reduce demographic bias in face classifiers with JAX/Flax.

Subpackages, in the one direction data flows:

* ``data``   -- the synthetic biased-faces benchmark, TFDS builders, grain pipelines,
               group definitions and samplers.
* ``models`` -- ResNets with global average pooling, the standard CNN, the DB-VAE.
* ``train``  -- losses, DB-VAE debiasing, jit-compiled steps, the training loop.
* ``eval``   -- per-group metrics with confidence intervals, reports and plots.
* ``cam``    -- Class Activation Maps and the Grad-CAM family, rendering, faithfulness.
* ``demo``   -- face detection and the live webcam / video CAM demo.
"""

__version__ = "0.1.0"
