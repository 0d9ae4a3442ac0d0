"""Tokenizers: discrete ids for particles, the targets of masked-particle pre-training.

- :class:`VQVAETokenizer` (:mod:`hepmpm.tokenizers.vqvae`): a VQ-VAE over a jet's particles
  (MPMv1); a particle's id is its code in the context of its jet.
- :class:`KMeansTokenizer` (:mod:`hepmpm.tokenizers.kmeans`): nearest k-means centroid of the
  particle's normalised features (MPMv2's k-means target).

Both are :class:`Tokenizer` s: ``tokenize(features [B, P, F] raw, mask [B, P]) -> long [B, P]``,
-1 at padding. :func:`save_tokenizer` / :func:`load_tokenizer` store them
(:mod:`hepmpm.tokenizers.store`); :func:`hepmpm.training.tokenizer.run_tokenizer` fits one on a
skim folder (``hepmpm tokenizer``), with the training stack pre-training and fine-tuning use.
"""

from hepmpm.tokenizers.base import PAD_TOKEN, TokenCounts, Tokenizer
from hepmpm.tokenizers.kmeans import KMeansConfig, KMeansFitConfig, KMeansTokenizer
from hepmpm.tokenizers.store import TOKENIZER_KINDS, load_tokenizer, save_tokenizer
from hepmpm.tokenizers.vqvae import QuantizerConfig, VQVAEConfig, VQVAETokenizer

__all__ = [
    "PAD_TOKEN",
    "TOKENIZER_KINDS",
    "KMeansConfig",
    "KMeansFitConfig",
    "KMeansTokenizer",
    "QuantizerConfig",
    "TokenCounts",
    "Tokenizer",
    "VQVAEConfig",
    "VQVAETokenizer",
    "load_tokenizer",
    "save_tokenizer",
]
