"""pocprint: shop-floor manager for hospital point-of-care 3D printing labs."""

__version__ = "0.1.0"
