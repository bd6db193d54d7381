"""Notice delivery: Twilio SMS and WeChat adapters and the notice outbox dispatcher."""
