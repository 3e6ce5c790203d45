"""Everything Kong, cut by job (Kong Ingress Controller's ``sendconfig`` is the model).

- ``client``: one Admin API connection — session, retry policy, token, TLS, entity reads/writes
- ``apply``: ``KongRouter``, the face the reconciler sees; picks the strategy for the node's mode;
  ``verify``
- ``dbmode`` | ``dbless``: entity writes in plan order | coalesced ``/config`` edits + hash watch
- ``writes`` | ``declarative``: pure — the write plan | the DB-less config edit
- ``records``, ``errors``, ``targets``: Kong's records, the ``KongError`` tree and its words,
  target strings and ownership tags

Nothing is re-exported here: import each name from its module, so importing a pure module
(``kong.targets``, ``kong.writes``) never loads aiohttp.
"""
