"""Ready models built from the rnnfast.nn layers (no recurrent code of their own)."""
from .language_model import LanguageModel

__all__ = ["LanguageModel"]
