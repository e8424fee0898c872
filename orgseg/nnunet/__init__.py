"""Thin adapters over nnU-Net v2: datasets, planning, training units, prediction.

:func:`orgseg.nnunet.env.nnunet_env` is the only place that sets ``nnUNet_*`` variables.
"""
