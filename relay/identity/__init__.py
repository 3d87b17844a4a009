"""Face identity in the relay: enrolment of vetted people (the models live in vision/)."""
