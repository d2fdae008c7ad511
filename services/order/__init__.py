"""The order service: takes orders, follows the saga's events, owns the order state machine."""
