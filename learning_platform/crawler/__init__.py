"""Reading visited web pages safely: public addresses only, bounded bodies, one deadline."""
