"""Datasets: MNIST, Fashion-MNIST and CIFAR-10 from their standard files, folders of images, and the batches.

Three parts, one concern each:

- :mod:`~gan_lib.data.files`: the standard files, where to find them (``data_dir``, ``$GAN_LIB_DATA_DIR``,
  the Keras cache, system folders, a checked download) and the bundled sample: :func:`load_dataset`;
- :mod:`~gan_lib.data.pipeline`: uint8 arrays to float batches in [-1, 1]: :func:`make_dataset`,
  :func:`iterate_batches`;
- :mod:`~gan_lib.data.faces`: any folder of images, and the faces: :func:`load_image_folder`, :func:`load_faces`.

Arrays are ``uint8`` images ``(N, H, W, C)`` and ``int64`` labels ``(N,)``. Every public name is read
from here (``gan_lib.data.load_dataset``); none of the three imports TensorFlow until it is needed.
"""

from gan_lib.data.faces import (
    FACE_CROP_FRACTION,
    FACES_ENV_NAMES,
    IMAGE_SUFFIXES,
    find_faces,
    load_faces,
    load_image_folder,
    make_synthetic_faces,
)
from gan_lib.data.files import (
    DATA_DIR_ENV,
    DATASET_NAMES,
    FASHION_CLASS_NAMES,
    MNIST_CLASS_NAMES,
    SAMPLE_DIR,
    SYSTEM_DIRS,
    Dataset,
    DatasetError,
    DatasetNotFoundError,
    find_dataset,
    keras_cache_dir,
    load_dataset,
    load_sample,
    read_cifar10_folder,
    read_fashion_idx,
    read_mnist_npz,
)
from gan_lib.data.pipeline import (
    epoch_order,
    iterate_batch_stacks,
    iterate_batches,
    make_dataset,
    to_uint8,
    to_unit_range,
)

__all__ = [
    "DATASET_NAMES",
    "DATA_DIR_ENV",
    "FACES_ENV_NAMES",
    "FACE_CROP_FRACTION",
    "FASHION_CLASS_NAMES",
    "IMAGE_SUFFIXES",
    "MNIST_CLASS_NAMES",
    "SAMPLE_DIR",
    "SYSTEM_DIRS",
    "Dataset",
    "DatasetError",
    "DatasetNotFoundError",
    "epoch_order",
    "find_dataset",
    "find_faces",
    "iterate_batch_stacks",
    "iterate_batches",
    "keras_cache_dir",
    "load_dataset",
    "load_faces",
    "load_image_folder",
    "load_sample",
    "make_dataset",
    "make_synthetic_faces",
    "read_cifar10_folder",
    "read_fashion_idx",
    "read_mnist_npz",
    "to_uint8",
    "to_unit_range",
]
