"""Data parallelism: a 1-D ``data`` mesh over all devices, sharded batches.

Parameters and optimizer state are replicated; every batch array is split along
its first axis over the ``data`` axis (``NamedSharding(mesh, P("data"))``), so
XLA inserts the gradient all-reduce itself (the flax/big_vision pattern, no
``pmap``). The same code runs on one CPU, several GPUs, a TPU slice, or several
hosts.

Multi-host: call ``maybe_initialize_distributed()`` before any other JAX call.
It runs ``jax.distributed.initialize()`` when one of these is set:

* ``JAX_COORDINATOR_ADDRESS`` (or ``COORDINATOR_ADDRESS``) = ``host:port`` of
  process 0, with ``JAX_NUM_PROCESSES`` (or ``NUM_PROCESSES``) and
  ``JAX_PROCESS_ID`` (or ``PROCESS_ID``) -- explicit configuration;
* ``TPU_WORKER_HOSTNAMES`` with more than one host (Cloud TPU pod slices), or
  ``SLURM_NTASKS`` > 1 / ``OMPI_COMM_WORLD_SIZE`` > 1 -- JAX auto-detects the
  rest from the cluster environment.

Each process then reads only its slice of every global batch (the pipeline's
``process_index``/``process_count``) and ``shard_batch`` assembles the global
array with ``jax.make_array_from_process_local_data``.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"
_distributed_initialized = False


def _env(*names: str) -> str | None:
  for name in names:
    if os.environ.get(name):
      return os.environ[name]
  return None


def _int_env(*names: str) -> int:
  value = _env(*names)
  try:
    return int(value) if value is not None else 0
  except ValueError:
    return 0


def maybe_initialize_distributed() -> bool:
  """Initialises multi-host JAX if the environment describes a cluster.

  Returns:
    True if ``jax.distributed.initialize`` was called (now or earlier).
  """
  global _distributed_initialized
  if _distributed_initialized:
    return True
  coordinator = _env("JAX_COORDINATOR_ADDRESS", "COORDINATOR_ADDRESS")
  if coordinator:
    num_processes = _env("JAX_NUM_PROCESSES", "NUM_PROCESSES")
    process_id = _env("JAX_PROCESS_ID", "PROCESS_ID")
    if num_processes is None or process_id is None:
      raise ValueError(
          f"coordinator address {coordinator!r} is set but JAX_NUM_PROCESSES and/or "
          "JAX_PROCESS_ID are not: set all three (or none for a single process)")
    jax.distributed.initialize(coordinator_address=coordinator,
                               num_processes=int(num_processes),
                               process_id=int(process_id))
  elif (len([h for h in os.environ.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]) > 1
        or _int_env("SLURM_NTASKS") > 1 or _int_env("OMPI_COMM_WORLD_SIZE") > 1):
    jax.distributed.initialize()
  else:
    return False
  _distributed_initialized = True
  return True


def make_mesh(devices=None) -> Mesh:
  """A 1-D mesh named ``data`` over ``devices`` (default: all devices of all hosts)."""
  devices = np.asarray(jax.devices() if devices is None else devices)
  return Mesh(devices.reshape(-1), (DATA_AXIS,))


def data_sharding(mesh: Mesh) -> NamedSharding:
  """Sharding of batch arrays: first axis split over ``data``."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  """Sharding of parameters and optimizer state: a full copy on every device."""
  return NamedSharding(mesh, P())


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
  """Raises ValueError unless ``batch_size`` splits evenly over the mesh's devices."""
  num_devices = mesh.devices.size
  if batch_size <= 0 or batch_size % num_devices:
    raise ValueError(
        f"batch size {batch_size} does not divide across {num_devices} devices "
        f"({jax.process_count()} process(es)); use a multiple of {num_devices} "
        "(e.g. --config.train.batch_size=...)")


def shard_batch(batch: Mapping[str, Any], mesh: Mesh) -> dict[str, jax.Array]:
  """Places a batch (dict of host arrays, this process's rows) on the mesh.

  Single process: ``batch`` is the whole global batch. Multi-host: it is this
  process's contiguous slice, and the global array is assembled from all of them.

  Args:
    batch: flat dict name -> numpy array with leading batch axis.
    mesh: the ``data`` mesh.

  Returns:
    dict name -> global ``jax.Array`` sharded along the batch axis.
  """
  sharding = data_sharding(mesh)
  if jax.process_count() == 1:
    return {k: jax.device_put(np.asarray(v), sharding) for k, v in batch.items()}
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in batch.items()}


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Puts every array of ``tree`` on all devices of the mesh (identical copies)."""
  return jax.device_put(tree, replicated(mesh))
