"""What a fitted classifier answers: probabilities, classes, gate weights.

Every answer is one pass of the network over the tiles (:meth:`forward_iter` on the
device ``device_``, the outputs gathered on the CPU); with a frozen backbone, over the
mean features of the ``predict_views`` views it averages.
"""

import numpy as np
import pandas as pd
import torch
from skorch.utils import to_device, to_numpy

from ..nn.fusion import class_probabilities
from .parameters import check_predict_views


class PredictionMixin:
    """The prediction methods of :class:`~hiercls.HierarchicalFusionClassifier`."""

    def _nonlinearity(self):
        # skorch's predict_nonlinearity parameter: "auto" is the hierarchy's factorization.
        chosen = self.predict_nonlinearity
        if isinstance(chosen, str) and chosen == "auto":
            return class_probabilities
        return chosen if chosen is not None else (lambda logits: logits)

    def _predict_dataset(self, X):
        """The dataset every answer iterates over."""
        self.check_is_fitted()
        # predict_views may have been set (set_params) after fit: checked here.
        return self.get_dataset(X, predict_views=check_predict_views(self))

    def _outputs(self, X):
        """The network's (logits, gates) per batch, on the CPU."""
        # device given: the scoring callbacks' cached forward_iter would default to
        # `device`, which may be "auto".
        return self.forward_iter(self._predict_dataset(X), training=False, device="cpu")

    def predict_proba(self, X):
        """Class probabilities, columns Non-Tumor, Non-Viable-Tumor, Viable-Tumor.

        Returns
        -------
        proba : ndarray of shape (n_samples, 3), rows summing to one
        """
        nonlinearity = self._nonlinearity()
        probas = [to_numpy(nonlinearity(output[0] if isinstance(output, tuple) else output))
                  for output in self._outputs(X)]
        return np.concatenate(probas, 0)

    def predict_log_proba(self, X):
        """The logarithm of :meth:`predict_proba` (``-inf`` where a probability is 0).

        Returns
        -------
        log_proba : ndarray of shape (n_samples, 3)
        """
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        """The most probable class of each tile, in the form of ``classes_``."""
        codes = self.predict_proba(X).argmax(axis=1)
        return self.classes_[codes]

    def gate_weights(self, X):
        """Each tile's gate weights.

        Returns
        -------
        weights : DataFrame of shape (n_samples, 2)
            Columns ``image`` (a_img) and ``radiomics`` (a_rad), rows summing to one,
            indexed like ``X``.
        """
        gates = [to_numpy(output[1]) for output in self._outputs(X)]
        return pd.DataFrame(np.concatenate(gates), columns=["image", "radiomics"], index=X.index)

    def predict_proba_and_gates(self, X):
        """Class probabilities and gate weights from one pass of the network.

        What :meth:`predict_proba` and :meth:`gate_weights` return, at the cost of one of
        them: the backbone runs once per tile (and view) instead of twice.

        Returns
        -------
        proba : ndarray of shape (n_samples, 3), rows summing to one
        gates : DataFrame of shape (n_samples, 2)
            Columns ``image`` and ``radiomics``, indexed like ``X``.

        Examples
        --------
        >>> from hiercls import HierarchicalFusionClassifier
        >>> callable(HierarchicalFusionClassifier.predict_proba_and_gates)
        True
        """
        nonlinearity = self._nonlinearity()
        probas, gates = [], []
        for output in self._outputs(X):
            probas.append(to_numpy(nonlinearity(output[0])))
            gates.append(to_numpy(output[1]))
        return (np.concatenate(probas),
                pd.DataFrame(np.concatenate(gates), columns=["image", "radiomics"], index=X.index))

    def embed(self, X):
        """Each tile's fused embedding ``z``: what the heads read.

        ``z = a_img * z_img + a_rad * z_rad`` (the image or radiomic embedding alone in
        the ablations), computed as :meth:`predict_proba` computes it (a frozen backbone's
        views averaged). For looking at what the model makes of tiles (a UMAP, a linear
        probe) and for :func:`hiercls.evaluation.quantification.patient_shift`.

        Parameters
        ----------
        X : DataFrame
            The tiles as :meth:`predict_proba` takes them (the columns the model was
            fitted on).

        Returns
        -------
        z : ndarray of shape (n_samples, embed_dim), float32

        Examples
        --------
        >>> import numpy as np
        >>> from hiercls import HierarchicalFusionClassifier
        >>> from hiercls.data.synthetic import make_synthetic_tiles
        >>> X, y, _ = make_synthetic_tiles(12, size=32, random_state=0)
        >>> X = X.assign(firstorder_Mean=np.linspace(-1, 1, len(X)))
        >>> clf = HierarchicalFusionClassifier(use_image=False, embed_dim=8, max_epochs=1,
        ...                                    verbose=0, random_state=0).fit(X, y)
        >>> clf.embed(X).shape
        (12, 8)
        """
        dataset = self._predict_dataset(X)
        self.module_.eval()
        out = []
        with torch.no_grad():
            for inputs, _ in self.get_iterator(dataset, training=False):
                z, _ = self.module_.embed(**to_device(inputs, self.device_))
                out.append(to_numpy(z))
        return np.concatenate(out).astype(np.float32)

    @property
    def task_weights_(self):
        """The learned task weights ``(exp(-lA), exp(-lB))`` of the hierarchical loss."""
        self.check_is_fitted(["criterion_"])
        if not hasattr(self.criterion_, "task_weights"):
            raise AttributeError("the flat model (hierarchical=False) has no task weights")
        return np.array(self.criterion_.task_weights())
