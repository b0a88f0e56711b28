package dev.edgesr.demo;

import java.util.Arrays;

/**
 * One interpreter (with its delegate) for the input shape being fed, built for that shape.
 *
 * <p>The app never resizes an interpreter after a delegate was applied (see {@link TfliteShape}
 * for why): {@link #get} returns the session built for {@code shape}, and when the shape
 * changes it closes that session (interpreter and delegate) and builds a new one from the
 * model with the new shape written in. A photo upscaled through a {@link TilePlan} feeds one
 * window shape for all its tiles, so a whole photo builds one session. Generic and plain Java
 * (no LiteRT type here), so the host tests run it with a recording factory.
 *
 * @param <T> a session: LiteRT's Interpreter and its delegate, closed together
 */
public final class InterpreterPerShape<T extends AutoCloseable> implements AutoCloseable {
    /** Builds a session whose input tensor is {@code shape} before any delegate is applied. */
    public interface Factory<T> {
        T build(int[] shape) throws Exception;
    }

    private final Factory<T> factory;
    private T session;
    private int[] shape = new int[0];
    private int builds;

    public InterpreterPerShape(Factory<T> factory) {
        this.factory = factory;
    }

    /**
     * The session for {@code shape}, built (and the previous one closed) when the shape changed.
     *
     * @throws IllegalStateException the factory failed (its exception is the cause)
     */
    public T get(int[] shape) {
        if (session != null && Arrays.equals(shape, this.shape)) return session;
        close();
        try {
            session = factory.build(shape.clone());
        } catch (Exception e) {
            throw new IllegalStateException("cannot build an interpreter for input " + Arrays.toString(shape) + ": " + e.getMessage(), e);
        }
        this.shape = shape.clone();
        builds++;
        return session;
    }

    /** Sessions built so far (one per change of shape). */
    public int builds() {
        return builds;
    }

    /** Closes the current session, if any. */
    @Override
    public void close() {
        if (session == null) return;
        T s = session;
        session = null;
        try {
            s.close();
        } catch (Exception e) {
            throw new IllegalStateException("closing the interpreter failed: " + e.getMessage(), e);
        }
    }
}
