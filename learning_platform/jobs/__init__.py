"""One subpackage per job family, named as its workflow and activity modules are: the SQL
(`queries.py`), the tables (`models.py`) and the types its workflow and activities share
(`contracts.py`, plain data and activity interfaces: the only modules workflows may import).

Packages here keep their `__init__` empty: a workflow importing `contracts` imports them too."""
