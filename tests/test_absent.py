"""The absent-family helpers: reads are truthfully empty, writes say the feature is not here."""
from twisted.trial.unittest import SynchronousTestCase

from openclaw.methods.absent import FEATURE_NOT_AVAILABLE, empty_read, not_available
from openclaw.protocol.errors import GatewayError
from openclaw.security.scopes import ADMIN, READ


class AbsentFamilyTests(SynchronousTestCase):
    def test_empty_read_answers_a_fresh_copy_each_time(self) -> None:
        spec = empty_read("cron.list", {"jobs": []})
        first = spec.handler(None)
        first["jobs"].append("mutated by a caller")
        self.assertEqual(spec.handler(None), {"jobs": []})
        self.assertEqual(spec.scope, READ)

    def test_not_available_names_the_feature_and_method(self) -> None:
        spec = not_available("cron.add", "cron")
        with self.assertRaises(GatewayError) as caught:
            spec.handler(None)
        shape = caught.exception.to_shape()
        self.assertEqual(shape["code"], "UNAVAILABLE")
        self.assertEqual(shape["message"], "cron is not available on this gateway (cron.add)")
        self.assertEqual(shape["details"], {"code": FEATURE_NOT_AVAILABLE, "feature": "cron", "method": "cron.add"})
        self.assertIs(shape["retryable"], False)
        self.assertEqual(spec.scope, ADMIN)
