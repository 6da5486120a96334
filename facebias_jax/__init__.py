"""facebias_jax: find and reduce demographic bias in face classifiers with JAX/Flax.

Subpackages and modules, lowest layer first (docs/architecture.md):

* ``ops``     -- CPU kernels: convolutions (oneDNN, phase forms, batch chunks), max-pool.
* ``models``  -- ResNets with global average pooling, the standard CNN, the DB-VAE;
                ``get_model`` and ``eval_fn``.
* ``runs``    -- the run directory of a trained model: ``load_model(workdir)``.
* ``data``    -- the synthetic biased-faces benchmark, TFDS builders, sources, grain
                pipelines, group definitions and samplers.
* ``cam``     -- Class Activation Maps and the Grad-CAM family, rendering, faithfulness.
* ``eval``    -- per-group metrics with confidence intervals, reports and plots.
* ``demo``    -- the live webcam / video CAM demo.
* ``train``   -- losses, DB-VAE debiasing, jit-compiled steps, the training loop.
* ``studies`` -- orchestration that trains and evaluates (sweeps).
* ``imaging``, ``faces`` -- image helpers and the face detector, shared by all.
"""

__version__ = "0.1.0"
