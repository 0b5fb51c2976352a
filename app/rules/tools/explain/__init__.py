"""`permctl rules explain`: every rule's verdict per change, as text or JSON; a recorded decision explained again."""
