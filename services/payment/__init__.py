"""The payment service: customers' wallets; charges on OrderCreated, refunds on failure."""
