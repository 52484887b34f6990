"""``basicsr.models.base_model``: a network wrapped for distributed training on the CPU."""
from torch.nn.parallel import DistributedDataParallel

from ..marks import is_ours, ours


def fix_cpu_distributed_model():
    """``BaseModel.model_to_device`` passes ``device_ids=[torch.cuda.current_device()]`` to DDP, which fails
    without CUDA; a CPU module takes ``device_ids=None``."""
    from basicsr.models import base_model

    original = base_model.BaseModel.model_to_device
    if is_ours(original):
        return

    def model_to_device(self, net):
        if self.opt['dist'] and self.device.type == 'cpu':
            net = net.to(self.device)
            return DistributedDataParallel(
                net, device_ids=None, find_unused_parameters=self.opt.get('find_unused_parameters', False))
        return original(self, net)

    base_model.BaseModel.model_to_device = ours(model_to_device)


def apply():
    fix_cpu_distributed_model()
