"""Local fakes of the outside services (Twilio, WeChat), shared by tests, the simulator and demo."""
