/* The error table and the allocation fault hook that every other test relies on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/alloc.h"
#include "teems/err.h"

static void test_strerror_covers_every_code(void **state)
{
	(void)state;
	for (int e = 0; e >= TEEMS_ERR_MIN_; e--) {
		assert_non_null(teems_strerror(e));
		assert_string_not_equal(teems_strerror(e), "unknown error");
	}
	assert_string_equal(teems_strerror(1), "unknown error");
	assert_string_equal(teems_strerror(TEEMS_ERR_MIN_ - 1), "unknown error");
}

static void test_errf(void **state)
{
	char buf[TEEMS_ERRBUF_LEN];
	char big[2 * TEEMS_ERRBUF_LEN];
	(void)state;

	assert_int_equal(teems_errf(NULL, TEEMS_EINVAL, "x"), TEEMS_EINVAL);
	assert_int_equal(teems_errf(buf, TEEMS_EIO, "disk %d", 3), TEEMS_EIO);
	assert_string_equal(buf, "disk 3");
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	teems_errf(buf, TEEMS_EIO, "%s", big);
	assert_int_equal(strlen(buf), TEEMS_ERRBUF_LEN - 1);
}

static void test_alloc_fault(void **state)
{
	void *a, *b, *c;
	(void)state;

	teems_alloc_fault(1, 0);
	a = teems_malloc(8);
	b = teems_malloc(8);
	c = teems_calloc(1, 8);
	assert_non_null(a);
	assert_null(b);
	assert_non_null(c);
	teems_free(a);
	teems_free(c);

	teems_alloc_fault(0, 1);
	assert_null(teems_malloc(1));
	assert_null(teems_realloc(NULL, 1));
	teems_alloc_fault(-1, 0);
	a = teems_malloc(1);
	assert_non_null(a);
	teems_free(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_strerror_covers_every_code),
		cmocka_unit_test(test_errf),
		cmocka_unit_test(test_alloc_fault),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
