r"""The source CAM study on CelebA: an ImageNet ResNet-18 fine-tuned to classify sex.

ResNet-18 from torchvision weights (``model.init_from``: ``resnet18-f37072fd.pth`` or
its ``.safetensors``), the standard 7x7 stem, CelebA's aligned crops at 224 px
(``crop_128`` for the 128 px variant), label ``Male``, RandomResizedCrop + flip, SGD,
validation per group every epoch and the checkpoint with the best worst-group
validation accuracy. Groups: sex x age x CelebA's ``Pale_Skin`` annotation (pale /
not_pale: CelebA labels no skin type); ``--config.eval.groups=Male,Young,ita_tone``
groups by the skin tone estimated from the pixels instead::

  python -m experiments.train_classifier --flagfile=experiments/flags/resnet18_celeba_male.flags \
      --config.data.manual_dir=~/data/celeba --config.model.init_from=~/weights/resnet18.pth \
      --workdir=workdirs/celeba_r18_male
  # the balanced variant: every epoch undersampled to equal numbers of women and men
  python -m experiments.train_classifier \
      --flagfile=experiments/flags/resnet18_celeba_male_balanced.flags \
      --config.data.manual_dir=~/data/celeba --config.model.init_from=~/weights/resnet18.pth \
      --workdir=workdirs/celeba_r18_male_balanced
"""

import ml_collections

from experiments.configs import classifier


def get_config() -> ml_collections.ConfigDict:
  """ResNet-18 (torchvision init) on CelebA Male at 224 px (see the module docstring)."""
  config = classifier.get_config()
  config.model = classifier.model_section("resnet18", small_inputs=False, init_from="",
                                          init_head=False)
  config.data.name = "facebias_celeba/crop_224"
  config.data.image_size = 224
  config.data.label_key = "Male"
  config.data.normalize = "imagenet"
  config.data.random_crop = True
  config.data.num_threads = 4
  config.train.optimizer = "sgd"
  config.train.learning_rate = 1e-3
  config.train.momentum = 0.9
  config.train.weight_decay = 1e-4
  config.train.batch_size = 64
  config.train.num_epochs = 5
  config.train.checkpoint_every_steps = 1000
  config.train.select_by = "worst_group_accuracy"
  config.debias.face_key = "is_face"
  config.eval.groups = "Male,Young,Pale_Skin"
  return config
