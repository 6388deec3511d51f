"""Reading scenario folders: everything a user gives us is validated here, once."""
