"""CPU kernels the models run on: convolutions (oneDNN, phase forms, batch chunks), max-pool.

Models get the convolution as an argument (``conv_general_dilated=conv.conv_fn(impl)``,
``transpose.ConvTranspose(..., conv_impl=impl)``), chosen by ``get_model(...,
conv_impl=...)`` / ``config.model.conv_impl``; see ``ops.conv`` for the choices.

* ``conv``      -- the dispatching ``fast_conv_general_dilated`` and ``conv_fn``.
* ``onednn``    -- oneDNN's convolution primitives through the XLA FFI (``csrc/``).
* ``phase``     -- sub-pixel forms of lhs-dilated convolutions.
* ``transpose`` -- transposed convolutions through ``conv``.
* ``pooling``   -- max-pooling with a cheap gradient.
"""
