"""The inventory service: stock per sku; reserves an order's lines after payment, releases them
when the saga is cancelled."""
