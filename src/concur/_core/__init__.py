"""The self-contained core of concur: every shared mechanism, written once.

Modules on top of it (``concur._wait``, ``concur._map``, the services, the channels)
import from here, never the reverse. A name without an underscore in a module of this
package is shared inside concur (the package itself is private).
"""
