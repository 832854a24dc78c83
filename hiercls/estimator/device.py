"""The classifier's ``device="auto"``: resolved once into ``device_``.

The parameter ``device`` keeps the user's value ("auto" too) at all times, so that
``get_params``, ``clone`` and a pickle moved to another machine see what was asked for;
``device_`` is what it resolves to, once, when the net is initialized or unpickled.
skorch reads ``device`` where it places the modules (``initialize``, and ``set_params``
when it re-initializes them), loads parameters and unpickles: those public entry points
run with ``device`` resolved to ``device_`` and give the user's value back after. Batches
go to ``device_`` in the overridden public hooks (``infer``, ``get_loss``); predictions
take an explicit device.
"""

import contextlib

import torch

from .parameters import restore_defaults


def resolve_device(device):
    """``"auto"`` becomes ``"cuda"`` where CUDA is available and ``"cpu"`` elsewhere.

    Examples
    --------
    >>> from hiercls.estimator.device import resolve_device
    >>> resolve_device("cpu"), resolve_device("auto") in ("cpu", "cuda")
    ('cpu', True)
    """
    if isinstance(device, str) and device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class AutoDeviceMixin:
    """skorch's public entry points that read ``device``, given ``device_`` there."""

    @contextlib.contextmanager
    def _device_resolved(self):
        requested = self.device
        self.device = self.device_
        try:
            yield
        finally:
            self.device = requested

    def initialize(self):
        self.device_ = resolve_device(self.device)
        with self._device_resolved():
            return super().initialize()

    def set_params(self, **params):
        if not hasattr(self, "device_"):
            return super().set_params(**params)
        requested = params.get("device", self.device)
        self.device_ = resolve_device(requested)
        if "device" in params:
            params = {**params, "device": self.device_}
        with self._device_resolved():
            super().set_params(**params)
        self.device = requested
        return self

    def __setstate__(self, state):
        requested = state["device"]
        restore_defaults(state)  # models saved before a parameter existed
        state["device"] = resolve_device(requested)
        super().__setstate__(state)
        # skorch maps a CUDA net onto the CPU where CUDA is missing: device_ is where
        # the tensors now are.
        self.device_ = self.device
        self.device = requested

    def load_params(self, f_params=None, f_optimizer=None, f_criterion=None, f_history=None,
                    checkpoint=None, use_safetensors=False, **kwargs):
        """skorch's ``load_params``, the tensors mapped onto ``device_``.

        The arguments are skorch's; other modules' files are ``f_<module>``.
        """
        unknown = [key for key in kwargs if not key.startswith("f_")]
        if unknown:
            raise TypeError(f"load_params got unexpected argument(s) {unknown}; expected "
                            "f_params, f_optimizer, f_criterion, f_history or f_<module>")
        if checkpoint is not None and not self.initialized_:
            self.initialize()
        with self._device_resolved():
            return super().load_params(f_params=f_params, f_optimizer=f_optimizer,
                                       f_criterion=f_criterion, f_history=f_history,
                                       checkpoint=checkpoint, use_safetensors=use_safetensors,
                                       **kwargs)
