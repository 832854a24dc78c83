"""Where tiles come from and what their labels mean.

- :mod:`~hiercls.data.datasets`: the TCIA Osteosarcoma-UT loader (and, re-exported, the
  synthetic tiles of :mod:`~hiercls.data.synthetic`);
- :mod:`~hiercls.data.images`: decoding a tile (8 and 16 bit), checking tiles;
- :mod:`~hiercls.data.labels`: the three classes and the tumor / viable hierarchy;
- :mod:`~hiercls.data.tables`: tiles listed in a CSV or found in a folder.
"""
