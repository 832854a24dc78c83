"""A griffe extension for this guide: Sphinx cross-reference roles as inline code.

hiercls' numpydoc docstrings use Sphinx roles (``:class:`~hiercls.RadiomicsTransformer```,
``:func:`hiercls.backbones.create_backbone```). mkdocstrings renders Markdown, where such a
role would show up literally; this rewrites each one to inline code of the name (its last
component when the target starts with ``~``), before the docstring is parsed.
"""

import re

from griffe import Extension

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|exc|obj|const|term):`(~?)([^`]+)`")


def _plain(match):
    tilde, target = match.groups()
    # ":role:`title <target>`" keeps the title.
    titled = re.fullmatch(r"(.+?)\s*<[^>]+>", target)
    if titled:
        return f"`{titled.group(1)}`"
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


class SphinxRolesAsCode(Extension):
    """Rewrite Sphinx roles in every docstring to inline code."""

    def on_instance(self, *, obj, **kwargs):
        docstring = getattr(obj, "docstring", None)
        if docstring is not None and ":" in docstring.value:
            docstring.value = _ROLE.sub(_plain, docstring.value)
