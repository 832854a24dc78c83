"""How the patients of ``fit`` reach the classifier's internal validation split.

``groups`` arrives by either route: as a fit parameter (``classifier__groups`` in a
Pipeline), or by metadata routing (``set_fit_request(groups=True)``). skorch hands every
fit parameter to the module's forward as well; the patients are for the split only.
"""

from collections.abc import Mapping

from sklearn.utils.metadata_routing import MethodMapping
from skorch.utils import to_tensor

from .splits import GroupedValidSplit


class PatientRoutingMixin:
    """skorch's ``get_split_datasets``, ``infer`` and the metadata routing, for ``groups``."""

    def get_split_datasets(self, X, y=None, groups=None, **fit_params):
        dataset = self.get_dataset(X, y)
        if not self.train_split:
            return dataset, None
        if isinstance(self.train_split, GroupedValidSplit):
            return self.train_split(dataset, y, groups=groups, random_state=self.random_seed_)
        if groups is not None:
            fit_params = {"groups": groups, **fit_params}
        return self.train_split(dataset, y, **fit_params)

    def get_metadata_routing(self):
        """Metadata routing: the internal split gets ``groups`` when ``fit`` requests them.

        Under routing skorch hands its split only what the split is routed, so the split
        joins the router, but only after ``set_fit_request(groups=True)``: with
        ``groups=False`` the patients go nowhere and the split draws tiles.
        """
        router = super().get_metadata_routing()
        if (isinstance(self.train_split, GroupedValidSplit)
                and router.consumes(method="fit", params={"groups"})):
            router.add(splitter=self.train_split, method_mapping=MethodMapping()
                       .add(caller="fit", callee="split").add(caller="partial_fit", callee="split"))
        return router

    def infer(self, x, groups=None, **fit_params):
        x = to_tensor(x, device=self.device_)
        if isinstance(x, Mapping):
            clashes = sorted(set(x) & set(fit_params))
            if clashes:
                raise ValueError(f"X and fit_params contain duplicate keys: {', '.join(clashes)}")
            return self.module_(**x, **fit_params)
        return self.module_(x, **fit_params)
