"""The networks: the particle embedding with in-model normalisation, the transformer backbone,
the masked-particle model (MPM v1 / v2 heads and decoder), the class-attention tagger, weaver's
ParT behind the tagger interface, and the files they are stored in (:mod:`~hepmpm.models.store`).
"""
