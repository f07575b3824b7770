__version__ = "0.1.0"
# installs the known-noise filters (qlora_nb.env) before any module imports bitsandbytes
from . import env as _env  # noqa: F401
