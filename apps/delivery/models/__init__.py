from apps.delivery.models.delivery import DeliveryBatch, DeliveryJob
from apps.delivery.models.target import DeliveryTarget
from apps.delivery.models.upload import Upload

__all__ = ["DeliveryBatch", "DeliveryJob", "DeliveryTarget", "Upload"]
