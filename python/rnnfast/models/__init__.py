"""Ready models built from the rnnfast.nn layers (no recurrent code of their own)."""
from .language_model import LanguageModel

__all__ = ["LanguageModel"]

# many-to-one, aligned many-to-many, one-to-many and encoder-decoder models (issue 6)
from .attention import Attention
from .classifier import SequenceClassifier
from .conditional import ConditionalGenerator
from .crf import CRF
from .seq2seq import Seq2Seq
from .tagger import SequenceTagger, encode_chars

__all__ += ["SequenceClassifier", "SequenceTagger", "encode_chars", "CRF", "ConditionalGenerator", "Seq2Seq", "Attention"]
