"""What the Magento driver remembers between jobs: its entity types in the mapping service."""

from __future__ import annotations

# Mapping-service entity types (per integration): what the driver remembers between jobs.
M_PRODUCT = "product"  # Akeneo entity key -> "<magento id>:<sku>"
M_MODEL = "product_model"  # model code -> "<magento id>:<sku>" (root models only)
M_MODEL_ROOT = "product_model_root"  # model code -> its root model code
M_MODEL_VARIANT = "product_model_variant"  # root model code -> family variant code
M_CATEGORY = "category"  # category code -> Magento category id
M_OPTION = "attribute_option"  # "<magento attribute>.<option code>" -> option id
M_TYPE = "akeneo_attribute_type"  # attribute code -> Akeneo type
M_AXES = "akeneo_family_variant_axes"  # family variant -> "axis1,axis2"
M_ATTRIBUTE_ID = "magento_attribute_id"  # Magento attribute code -> attribute_id
M_LINKED = "variant_link"  # variant SKU -> the parent model code it is attached under
M_MEDIA = "media"  # "<sku>|<attribute>" -> "<sha256>:<entry id>"
