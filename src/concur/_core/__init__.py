"""The self-contained core of concur: every shared mechanism, written once.

Modules on top of it (``concur._wait``, ``concur._map``, the services, the channels)
import from here, never the reverse. A name without an underscore in a module of this
package is shared inside concur (the package itself is private).
"""

from .calls import SyncFunctionExpected as SyncFunctionExpected
from .calls import call as call
from .calls import prepare_thread_call as prepare_thread_call
from .calls import run_thread_call as run_thread_call
from .calls import to_thread as to_thread
from .checks import check_async_function as check_async_function
from .checks import check_function as check_function
from .checks import check_int as check_int
from .checks import check_number as check_number
from .checks import check_timeout as check_timeout
from .checks import fn_name as fn_name
from .checks import is_async_callable as is_async_callable
from .errors import ConcurError as ConcurError
from .errors import UnsafeHandoffError as UnsafeHandoffError
from .errors import UnsafeHandoffWarning as UnsafeHandoffWarning
from .groups import INTERRUPTS as INTERRUPTS
from .groups import CallGroup as CallGroup
from .groups import collapse as collapse
from .groups import first_interrupt as first_interrupt
from .groups import is_cancellation as is_cancellation
from .settings import PerRunLimiter as PerRunLimiter
from .settings import Settings as Settings
from .settings import current_settings as current_settings
from .settings import in_event_loop as in_event_loop
from .settings import scope as scope
from .settings import settings_var as settings_var
from .taskgroup import TaskGroup as TaskGroup
from .threadcall import ThreadCall as ThreadCall
from .threadcall import check_cancelled as check_cancelled
from .threadcall import interrupt_with as interrupt_with
